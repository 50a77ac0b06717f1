// `chat TEXT` in the shell: streamed when the caller takes a stream (pk shell), whole otherwise.
import type { NodeContext } from "../context.ts";
import { UsageError, type Command } from "../shell.ts";
import { ChatBusyError, ChatInputError, chatOf } from "./chat.ts";
import { options } from "./memory-commands.ts";

export const chat: Command<NodeContext> = {
  name: "chat",
  summary: "chat: talk to the cluster's mind; it recalls what it was told on any node and remembers this turn",
  usage: "chat [--as SPEAKER] [--conv NAME] [--mind NAME|local|frontier] TEXT",
  async run(args, { kernel, stream }) {
    const { words, values } = options(args, ["--as", "--conv", "--mind"]);
    if (words.length === 0) throw new UsageError("needs what to say");
    const mind = values.get("--mind");
    const prefer = mind === "local" || mind === "frontier" ? mind : undefined;
    try {
      const answer = await chatOf(kernel).turn({
        text: words.join(" "), speaker: values.get("--as"), conv: values.get("--conv"),
        mind: prefer === undefined ? mind : undefined, prefer,
        onDelta: stream?.out, signal: stream?.signal,
      });
      const by = answer.source === "memory" ? "from memory alone" : `${answer.mind?.name ?? "?"} (${answer.mind?.kind ?? "?"})`;
      const trailer = `[${by}; ${answer.recalled.length} memories recalled; ${Math.round(answer.totalMs)} ms]`;
      return stream === undefined ? `${answer.text}\n${trailer}` : `\n${trailer}`;
    } catch (error) {
      if (error instanceof ChatInputError || error instanceof ChatBusyError) throw new UsageError(error.message);
      throw error;
    }
  },
};
