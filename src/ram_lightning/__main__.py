"""`python -m ram_lightning <command> [hydra overrides]` and the `ram-lightning` console script."""

import importlib
import os
import sys

COMMANDS = {
    "train": ("ram_lightning.train", "train a model (Hydra config: train.yaml)"),
    "eval": ("ram_lightning.evaluate", "evaluate a checkpoint on a test set (eval.yaml)"),
    "data": ("ram_lightning.data_cli", "fetch and verify MNIST, build canvases, preview them (fetch.yaml)"),
    "render": ("ram_lightning.render", "draw a checkpoint's glimpses as GIFs (render.yaml)"),
    "predict": ("ram_lightning.predict", "classify your own image files (predict.yaml)"),
    "export": ("ram_lightning.export", "export a checkpoint to TorchScript or ONNX (export.yaml)"),
    "bench": ("ram_lightning.bench", "measure retina, training-step and canvas speed (bench.yaml)"),
}
# Lightning's DDP launcher re-runs this program with the overrides but without the command word,
# so the command travels to those child processes through the environment.
_ENV = "RAM_LIGHTNING_COMMAND"


def usage() -> str:
    lines = ["usage: python -m ram_lightning <command> [key=value ...] [--help]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`python -m ram_lightning <command> --help` lists that command's config groups and options."]
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in COMMANDS:
        command = args.pop(0)
        os.environ[_ENV] = command
    elif os.environ.get(_ENV) in COMMANDS:
        command = os.environ[_ENV]
    else:
        print(usage(), file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        if args and args[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {args[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            sys.exit(2)
        return
    sys.argv = [f"{sys.argv[0]} {command}", *args]
    importlib.import_module(COMMANDS[command][0]).main()


if __name__ == "__main__":
    main()
