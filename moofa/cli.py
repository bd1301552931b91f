"""The ``moofa`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .memory import MEMORY_MODELS, profile
from .spaces import Space, design_widths, get_space, names
from .subnet import Subnet


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _num_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _load_space(arg: str) -> Space:
    """A registered space name, or a JSON file written by ``Space.to_dict()``."""
    if arg.endswith(".json") and Path(arg).is_file():
        return Space.from_dict(json.loads(Path(arg).read_text()))
    return get_space(arg)


def _largest(space: Space) -> Subnet:
    return Subnet(ks=[max(space.kernels)] * space.n_slots, e=[max(space.expands)] * space.n_slots,
                  d=[max(space.depths)] * space.n_stages, image_size=max(space.resolutions))


def _config_from_args(args, space: Space) -> Subnet:
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ValueError(f"--config: {text!r} is neither a JSON object nor an existing file")
            text = path.read_text()
        data = json.loads(text)
        if isinstance(data, dict) and "config" in data and "ks" not in data:
            data = data["config"]  # a profile / search result record
        return Subnet.from_dict(data)
    if any(v is not None for v in (args.ks, args.e, args.d, args.image_size)):
        big = _largest(space)
        return Subnet(ks=args.ks or big.ks, e=args.e or big.e, d=args.d or big.d,
                      image_size=args.image_size or big.image_size)
    return _largest(space)


def cmd_profile(args) -> int:
    space = _load_space(args.space)
    net = _config_from_args(args, space)
    p = profile(net, space, memory_model=args.memory_model, bytes_per_item=args.bytes_per_item)
    if args.json:
        print(json.dumps({"config": net.to_dict(), **p.to_dict()}, indent=2))
    else:
        print(f"space {space.name}, memory model {p.memory_model}: {net}")
        print(p.table())
    return 0


def cmd_design_widths(args) -> int:
    w = design_widths(start_width=args.start_width, feature_size=args.feature_size, kernel=args.kernel,
                      expand=args.expand, n_widths=args.n)
    print(json.dumps(w) if args.json else " ".join(map(str, w)))
    return 0


def cmd_spaces(args) -> int:
    from .memory import min_peak

    if args.json:
        print(json.dumps({n: get_space(n).to_dict() for n in names()}, indent=2))
        return 0
    print(f"{'space':<12} {'widths':<26} {'kernels':<10} {'expands':<17} {'depths':<10} "
          f"{'classes':>7} {'min peak':>10} {'subnets':>9}")
    for n in names():
        sp = get_space(n)
        ex = [int(e) if float(e).is_integer() else e for e in sp.expands]
        coupled = " (by d)" if sp.expand_by_depth else ""
        print(f"{n:<12} {str(sp.widths):<26} {str(list(sp.kernels)):<10} {str(ex) + coupled:<17} "
              f"{str(list(sp.depths)):<10} {sp.n_classes:>7} {min_peak(sp)[0]:>10,} {sp.size():>9.1e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moofa", description="Find the most accurate OFA-style subnet that fits a peak-memory budget.")
    parser.add_argument("--version", action="version", version=f"moofa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("profile", help="memory per layer, peak, avg +- std, MFLOPs and params of one subnet")
    p.add_argument("--space", default="moofa", help=f"space name ({', '.join(names())}) or a space JSON file")
    p.add_argument("--config", help="subnet as a JSON object, or a JSON file (keys ks, e, d, image_size)")
    p.add_argument("--ks", type=_int_list, help="kernel per block slot, e.g. 3,5,7,...")
    p.add_argument("--e", type=_num_list, help="expand ratio per block slot")
    p.add_argument("--d", type=_int_list, help="depth per stage")
    p.add_argument("--image-size", type=int, help="input resolution")
    p.add_argument("--memory-model", default="full", choices=[*MEMORY_MODELS, "paper", "mcu"],
                   help="full: in+out+weights per layer (paper); activations/mcu: weights in flash")
    p.add_argument("--bytes-per-item", type=float, default=None,
                   help="report bytes instead of items (4: float32, 1: int8)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("design-widths", help="channel widths from the paper's memory-balancing rule")
    p.add_argument("--start-width", type=int, default=24)
    p.add_argument("--feature-size", type=float, default=56)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--expand", type=float, default=4)
    p.add_argument("-n", type=int, default=6, help="number of widths")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_design_widths)

    p = sub.add_parser("spaces", help="list the known search spaces")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"moofa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moofa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
