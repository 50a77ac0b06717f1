#!/usr/bin/python3
# Golden fixtures for the Brain's Transformer (src/core/brain/transformer.ts), made by PyTorch.
#
# Regenerate (from the repository root; needs PyTorch, e.g. Debian's `apt-get install python3-torch`,
# which serves /usr/bin/python3 and not a pyenv python3 on PATH):
#
#     /usr/bin/python3 scripts/brain-golden.py
#
# It writes test/testdata/brain/golden-seed.json and golden-small.json. The tests read the JSON
# only (test/core/brain/golden.test.ts); Python is never needed to run them.
#
# The model is built here from torch.nn modules (nn.Embedding, nn.LayerNorm, nn.Linear,
# nn.GELU(approximate='tanh'), a masked softmax), independently of the TypeScript code, in float64:
#
#   h0[t] = tokEmb[ids[t]] + values[t]*valEmb + posEmb[t]
#   per layer (pre-norm, causal): a = LN1(h); q,k,v = Linear(a); h = h + Wo(attention); h = h + W2(gelu(W1(LN2(h))))
#   logits = head(LNf(h[T-1]))
#
# Each fixture holds the config, the flat parameters in transformer.ts's layout order, the inputs,
# the logits of every example, the mean cross-entropy of the batch and its gradient (flat, same
# order). The seed fixture also holds the losses of 5 AdamW steps (lr 0.01, weight decay 0.01 on the
# 2-D tensors only: transformer.weightDecayMask), the llm.c test pattern. Parameters are drawn from a
# fixed torch seed (std 0.35, LayerNorm gains around 1, biases non-zero so every gradient is
# exercised) and rounded to 5 decimals; values are multiples of 1/256, exact in float32, so the
# JSON stays small and both precisions read the same inputs.
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "testdata", "brain")


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["dModel"], cfg["dFF"]
        self.n_heads = cfg["nHeads"]
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.wq = nn.Linear(d, d)
        self.wk = nn.Linear(d, d)
        self.wv = nn.Linear(d, d)
        self.wo = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.w1 = nn.Linear(d, f)
        self.w2 = nn.Linear(f, d)
        self.gelu = nn.GELU(approximate="tanh")

    def flat(self):
        return [self.ln1.weight, self.ln1.bias, self.wq.weight, self.wq.bias, self.wk.weight, self.wk.bias,
                self.wv.weight, self.wv.bias, self.wo.weight, self.wo.bias, self.ln2.weight, self.ln2.bias,
                self.w1.weight, self.w1.bias, self.w2.weight, self.w2.bias]

    def forward(self, h):
        T, d = h.shape
        H = self.n_heads
        dh = d // H
        a = self.ln1(h)
        # [T, d] -> [H, T, dh]: head j owns dims [j*dh, (j+1)*dh).
        q = self.wq(a).view(T, H, dh).transpose(0, 1)
        k = self.wk(a).view(T, H, dh).transpose(0, 1)
        v = self.wv(a).view(T, H, dh).transpose(0, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(dh)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        att = (F.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(T, d)
        h = h + self.wo(att)
        return h + self.w2(self.gelu(self.w1(self.ln2(h))))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["dModel"]
        self.tok_emb = nn.Embedding(cfg["vocab"], d)
        self.val_emb = nn.Parameter(torch.zeros(d))
        self.pos_emb = nn.Parameter(torch.zeros(cfg["seqLen"], d))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["nLayers"])])
        self.lnf = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, cfg["nClasses"])

    def flat(self):
        """The parameters in transformer.ts's layout order."""
        out = [self.tok_emb.weight, self.val_emb, self.pos_emb]
        for b in self.blocks:
            out += b.flat()
        return out + [self.lnf.weight, self.lnf.bias, self.head.weight, self.head.bias]

    def forward(self, ids, values):
        T = ids.shape[0]
        h = self.tok_emb(ids) + values[:, None] * self.val_emb + self.pos_emb[:T]
        for b in self.blocks:
            h = b(h)
        return self.head(self.lnf(h[T - 1]))


def flat_values(tensors):
    return [float(x) for t in tensors for x in t.detach().reshape(-1).tolist()]


def make(cfg, seed, lengths, adamw_steps):
    torch.manual_seed(seed)
    model = Model(cfg)
    with torch.no_grad():
        for p in model.flat():
            p.copy_(torch.randn(p.shape) * 0.35)
        for ln in [m for b in model.blocks for m in (b.ln1, b.ln2)] + [model.lnf]:
            ln.weight.add_(1.0)
        for p in model.flat():
            p.copy_(torch.round(p * 1e5) / 1e5)
    examples = []
    for n, T in enumerate(lengths):
        ids = torch.randint(0, cfg["vocab"], (T,))
        values = torch.round((torch.rand(T) * 4 - 2) * 256) / 256
        examples.append({"ids": ids, "values": values, "label": n % cfg["nClasses"]})

    def batch_loss():
        logits = torch.stack([model(e["ids"], e["values"]) for e in examples])
        labels = torch.tensor([e["label"] for e in examples])
        return logits, F.cross_entropy(logits, labels)

    params = flat_values(model.flat())
    logits, loss = batch_loss()
    model.zero_grad()
    loss.backward()
    grad = flat_values([p.grad for p in model.flat()])
    fixture = {
        "generator": "scripts/brain-golden.py",
        "torch": torch.__version__,
        "config": cfg,
        "params": params,
        "examples": [{"ids": e["ids"].tolist(), "values": e["values"].tolist(), "label": e["label"],
                      "logits": logits[n].tolist()} for n, e in enumerate(examples)],
        "loss": loss.item(),
        "grad": grad,
    }
    if adamw_steps > 0:
        lr, wd = 0.01, 0.01
        decay = [p for p in model.flat() if p.dim() >= 2]
        no_decay = [p for p in model.flat() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=lr, betas=(0.9, 0.999), eps=1e-8)
        losses = []
        for _ in range(adamw_steps):
            opt.zero_grad()
            _, l = batch_loss()
            losses.append(l.item())
            l.backward()
            opt.step()
        fixture["adamw"] = {"lr": lr, "weightDecay": wd, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                            "decay": "2-D tensors", "losses": losses}
    return fixture


def write(name, fixture):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    body = ",\n".join(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":")) for k, v in fixture.items())
    with open(path, "w") as f:
        f.write("{\n" + body + "\n}\n")
    print(f"{path}: {os.path.getsize(path)} bytes, {len(fixture['params'])} parameters, loss {fixture['loss']:.6f}")


SEED = {"vocab": 4, "seqLen": 4, "dModel": 8, "nHeads": 2, "dFF": 16, "nLayers": 1, "nClasses": 3}
SMALL = {"vocab": 7, "seqLen": 5, "dModel": 12, "nHeads": 3, "dFF": 24, "nLayers": 2, "nClasses": 3}

write("golden-seed.json", make(SEED, 1234, [4, 3, 2], adamw_steps=5))
write("golden-small.json", make(SMALL, 5678, [5, 3], adamw_steps=0))
