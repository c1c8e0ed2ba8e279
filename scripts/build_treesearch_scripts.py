"""Writes the tree search's recorded LLM scripts (offline runs and tests) from the code
templates below, so the scripts' Python stays readable and reviewable here.

    python scripts/build_treesearch_scripts.py
"""

from __future__ import annotations

import json
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "aisci_nb" / "research" / "llm" / "scripts"

COMMON = '''import json
import os

import matplotlib
import numpy as np
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEED = int(os.environ.get("AISCI_SEED", "0"))
torch.manual_seed(SEED)
rng = np.random.default_rng(SEED)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def two_moons(n, noise):
    t = rng.uniform(0, np.pi, n)
    half = n // 2
    upper = np.stack([np.cos(t[:half]), np.sin(t[:half])], 1)
    lower = np.stack([1 - np.cos(t[half:]), 0.5 - np.sin(t[half:])], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (n, 2))
    y = np.concatenate([np.zeros(half), np.ones(n - half)])
    order = rng.permutation(n)
    return (torch.tensor(x[order], dtype=torch.float32).to(device),
            torch.tensor(y[order], dtype=torch.long).to(device))


X, Y = two_moons(1024, 0.25)
Xtr, Ytr, Xva, Yva = X[:768], Y[:768], X[768:], Y[768:]


def make_model(hidden, depth, dropout, out=2):
    layers, d = [], 2
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
        d = hidden
    layers.append(nn.Linear(d, out))
    return nn.Sequential(*layers).to(device)


def train(cfg):
    torch.manual_seed(SEED)
    model = make_model(cfg["hidden"], cfg["depth"], cfg["dropout"], cfg.get("out", 2))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"])
    loss_fn = nn.CrossEntropyLoss()
    series = {"train_loss": [], "val_loss": [], "val_acc": []}
    for _ in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(Xtr), device=device)
        total = 0.0
        for i in range(0, len(Xtr), cfg["batch"]):
            idx = perm[i:i + cfg["batch"]]
            xb = Xtr[idx] + cfg["input_noise"] * torch.randn_like(Xtr[idx])
            opt.zero_grad()
            loss = loss_fn(model(xb), Ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            logits = model(Xva)
            series["train_loss"].append(total / len(Xtr))
            series["val_loss"].append(loss_fn(logits, Yva).item())
            series["val_acc"].append((logits.argmax(1) == Yva).float().mean().item())
    return model, series


def plot(series, title):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    a1.plot(series["train_loss"], label="train")
    a1.plot(series["val_loss"], label="validation")
    a1.set(title=f"{title}: loss", xlabel="epoch")
    a1.legend()
    a2.plot(series["val_acc"])
    a2.set(title=f"{title}: validation accuracy", xlabel="epoch", ylim=(0.4, 1.0))
    fig.tight_layout()
    fig.savefig("curves.png", dpi=80)


def decision_boundary(model):
    xx, yy = np.meshgrid(np.linspace(-1.5, 2.5, 120), np.linspace(-1.0, 1.5, 120))
    grid = torch.tensor(np.c_[xx.ravel(), yy.ravel()], dtype=torch.float32, device=device)
    with torch.no_grad():
        zz = model(grid).argmax(1).cpu().numpy().reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.contourf(xx, yy, zz, alpha=0.3)
    ax.scatter(*Xva.cpu().numpy().T, c=Yva.cpu().numpy(), s=6)
    ax.set(title="decision boundary (validation points)")
    fig.tight_layout()
    fig.savefig("decision_boundary.png", dpi=80)


def save(cfg, series, **extra):
    data = {"metrics": {"val_accuracy": series["val_acc"][-1],
                        "val_loss": series["val_loss"][-1],
                        "train_loss": series["train_loss"][-1]},
            "series": series, "config": cfg, **extra}
    with open("experiment_data.json", "w") as f:
        json.dump(data, f)
    print(f"val_accuracy={series['val_acc'][-1]:.4f} val_loss={series['val_loss'][-1]:.4f}")
'''

BASE = dict(hidden=16, depth=1, dropout=0.0, lr=0.01, wd=0.0, epochs=30, batch=64,
            input_noise=0.0)


def script(body: str) -> str:
    return COMMON + "\n\n" + body.strip() + "\n"


def run_cfg(cfg: dict, title: str, extra: str = "") -> str:
    return script(f'''
cfg = {cfg!r}
model, series = train(cfg)
plot(series, {title!r})
decision_boundary(model)
save(cfg, series{extra})
''')


def answer(plan: str, code: str) -> str:
    return f"{plan}\n\n```python\n{code}```\n"


def entry(op: str, stage: str, plan: str, code: str, label: str | None = None,
          repeat: bool = False) -> dict:
    match = f"[treesearch op={op} stage={stage}" + (f" label={label}]" if label else "")
    e = {"role": "code", "match": match, "model": "scripted",
         "response": {"text": answer(plan, code)},
         "usage": {"input_tokens": 1500, "output_tokens": 900}}
    if repeat:
        e["repeat"] = True
    return e


def sweep(param: str, values: list, base: dict) -> str:
    return script(f'''
base = {base!r}
results, runs = {{}}, {{}}
for value in {values!r}:
    cfg = {{**base, {param!r}: value}}
    model, series = train(cfg)
    results[str(value)] = series["val_acc"][-1]
    runs[str(value)] = (cfg, model, series)
best = max(results, key=results.get)
cfg, model, series = runs[best]
plot(series, "best {param}=" + best)
decision_boundary(model)
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([float(v) for v in results], list(results.values()), marker="o")
ax.set(xscale="log", xlabel={param!r}, ylabel="validation accuracy", title="sweep")
fig.tight_layout()
fig.savefig("sweep_{param}.png", dpi=80)
save(cfg, series, sweeps={{{param!r}: results}})
''')


def default_entries() -> list[dict]:
    s1, s2, s3, s4 = "Stage_1", "Stage_2", "Stage_3", "Stage_4"
    buggy_shape = run_cfg({**BASE, "out": 1}, "baseline")  # one logit for two classes
    no_save = script(f'''
cfg = {BASE!r}
model, series = train(cfg)
print("final validation accuracy", series["val_acc"][-1])
''')
    improved_a = {**BASE, "hidden": 32, "depth": 2, "lr": 0.01, "dropout": 0.1,
                  "input_noise": 0.05, "epochs": 40}
    improved_b = {**improved_a, "hidden": 64, "wd": 1e-4}
    return [
        entry("draft", s1, "Plan: an MLP with one hidden layer of 16 units, trained with Adam "
              "and cross-entropy on 1024 two-moons points (768 train / 256 validation).",
              buggy_shape),
        entry("draft", s1, "Plan: the same MLP, trained full epochs with minibatches of 64; "
              "report the final validation accuracy.", no_save, repeat=True),
        entry("debug", s1, "Plan: the model must output one logit per class (2) for "
              "cross-entropy, and the results must be saved to experiment_data.json.",
              run_cfg(BASE, "baseline"), repeat=True),
        entry("tune", s2, "Hyperparameter: lr\nPlan: sweep the learning rate over 0.003, "
              "0.01, 0.03 with a cosine schedule; keep the best.",
              sweep("lr", [0.003, 0.01, 0.03], BASE)),
        entry("tune", s2, "Hyperparameter: hidden\nPlan: sweep the hidden width over 8, 32, "
              "64 at lr 0.03.", sweep("hidden", [8, 32, 64], {**BASE, "lr": 0.03}),
              repeat=True),
        entry("improve", s3, "Plan: two hidden layers of 32 units, dropout 0.1 and small input "
              "noise as augmentation, to test whether smoother boundaries generalise better.",
              run_cfg(improved_a, "deeper + noise")),
        entry("improve", s3, "Plan: widen to 64 units and add weight decay 1e-4 on top.",
              run_cfg(improved_b, "wider + weight decay"), repeat=True),
        {"role": "code", "match": f"[treesearch op=plan_ablations stage={s4}]",
         "model": "scripted",
         "response": {"text": json.dumps({"ablations": ["linear_model", "no_input_noise"]})},
         "usage": {"input_tokens": 900, "output_tokens": 40}},
        entry("ablate", s4, "Ablation: linear_model\nPlan: drop the hidden layers (logistic "
              "regression) to show the nonlinearity matters.",
              run_cfg({**improved_b, "depth": 0}, "ablation: linear model"),
              label="linear_model"),
        entry("ablate", s4, "Ablation: no_input_noise\nPlan: train without the input-noise "
              "augmentation.", run_cfg({**improved_b, "input_noise": 0.0},
                                       "ablation: no input noise"), label="no_input_noise"),
    ]


def tiny(metric: float, val_loss: list[float]) -> str:
    """Code that saves results without training (test scripts: fast)."""
    return (
        "import json\n"
        f"series = {{'train_loss': {val_loss!r}, 'val_loss': {val_loss!r}, "
        f"'val_acc': [{metric}] * {len(val_loss)}}}\n"
        "json.dump({'metrics': {'val_accuracy': %r}, 'series': series, 'config': {}}, "
        "open('experiment_data.json', 'w'))\n" % metric)


def never_works() -> list[dict]:
    bad = "raise RuntimeError('this experiment never works')\n"
    return [entry(op, "Stage_1", f"Plan: attempt ({op}).", bad, repeat=True)
            for op in ("draft", "debug", "improve")]


def never_finishes() -> list[dict]:
    settled = tiny(0.9, [0.5, 0.3, 0.30, 0.30, 0.30])
    oscillating = tiny(0.8, [0.5, 0.2, 0.9, 0.1, 1.2])
    return [
        entry("draft", "Stage_1", "Plan: a baseline that works at once.", settled, repeat=True),
        entry("debug", "Stage_1", "Plan: fix.", settled, repeat=True),
        entry("improve", "Stage_1", "Plan: improve.", settled, repeat=True),
        entry("tune", "Stage_2", "Hyperparameter: lr\nPlan: a learning rate that never "
              "settles.", oscillating, repeat=True),
        entry("debug", "Stage_2", "Plan: fix.", oscillating, repeat=True),
    ]


def write(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"entries": entries}, indent=1) + "\n")
    print(f"wrote {path} ({len(entries)} entries)")


if __name__ == "__main__":
    write(SCRIPTS / "default" / "treesearch.json", default_entries())
    write(SCRIPTS / "never_works" / "treesearch.json", never_works())
    write(SCRIPTS / "never_finishes" / "treesearch.json", never_finishes())
