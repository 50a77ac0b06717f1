// Types of scripts/recent-node.js (plain JavaScript, so that Node 18 loads it), for the tests.
export declare const REQUIRED_NODE: string;
export declare const FETCHED_MAJOR: number;
export declare function isRecentNode(version: string): boolean;
export declare function nodePackageName(platform?: string, arch?: string): string | undefined;
export declare function nodeCacheDir(env?: Record<string, string | undefined>): string;
export declare function ensureRecentNode(): string;
export declare function runAndExit(command: string, args: readonly string[], nodeBin?: string): void;
export declare function reexecWithRecentNode(script: string, args: readonly string[]): boolean;
