"""``darkseg calibrate``: a camera noise profile from dark frames and flat fields, or from DNG tags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import non_negative_int, positive_int

HELP = "calibrate a camera's noise profile from dark frames + flat fields (or a DNG NoiseProfile)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dark", type=Path, help="folder of dark frames (ISO<n>/ sub-folders or EXIF ISO)")
    parser.add_argument("--flat", type=Path, help="folder of flat-field frames, 2+ per exposure level")
    parser.add_argument(
        "--dng-profile",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="quick path: a Poisson-Gaussian profile from the NoiseProfile tag of DNG files (one per ISO)",
    )
    parser.add_argument("--out", required=True, type=Path, help="camera profile JSON to write")
    parser.add_argument("--name", help="camera name stored in the profile (default: the --out file stem)")
    parser.add_argument("--plots", type=Path, help="folder for the photon-transfer and noise-fit plots")
    parser.add_argument(
        "--crop",
        type=_crop,
        default=512,
        help=f"central crop in packed pixels per side, 0 (whole frame) or >= {_MIN_CROP}",
    )
    parser.add_argument(
        "--tile", type=_tile, default=32, help=f"photon-transfer tile size in packed pixels, >= {_MIN_TILE}"
    )
    parser.add_argument(
        "--black", type=float, nargs="+", help="black level for PNG/TIFF mosaics (1 or 4 values R G1 B G2)"
    )
    parser.add_argument("--white", type=float, help="white level for PNG/TIFF mosaics")
    parser.add_argument("--cfa", default=None, help="CFA pattern for PNG/TIFF mosaics (default RGGB)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


# the limits of darkseg.synth.calibrate_frames.MIN_CROP / calibrate.MIN_TILE (kept here so that
# `darkseg calibrate --help` does not import NumPy and SciPy); tests check they agree
_MIN_CROP = 16
_MIN_TILE = 4


def _crop(text: str) -> int:
    value = non_negative_int(text)
    if 0 < value < _MIN_CROP:
        raise argparse.ArgumentTypeError(f"must be 0 (whole frame) or >= {_MIN_CROP}, got {value}")
    return value


def _tile(text: str) -> int:
    value = positive_int(text)
    if value < _MIN_TILE:
        raise argparse.ArgumentTypeError(
            f"must be >= {_MIN_TILE} (a variance from fewer than {_MIN_TILE**2} pixels is noise), got {value}"
        )
    return value


def _check_options(args: argparse.Namespace) -> str | None:
    """What is wrong with the level options, ``--tile`` against ``--crop`` and ``--plots``, or None."""
    from darkseg.raw.reader import RawFormatError
    from darkseg.synth.calibrate_frames import check_levels

    black = args.black[0] if args.black and len(args.black) == 1 else args.black
    levels = {"black_level": black, "white_level": args.white, "cfa_pattern": args.cfa}
    try:
        check_levels(
            levels, "options", {"black_level": "--black", "white_level": "--white", "cfa_pattern": "--cfa"}
        )
    except RawFormatError as exc:
        return str(exc)
    if args.black is not None and args.white is not None and max(args.black) >= args.white:
        return f"--black {max(args.black):g} must be below --white {args.white:g}"
    if args.crop and args.tile > args.crop:
        return f"--tile {args.tile} is larger than --crop {args.crop}"
    if args.plots is not None:
        for p in (args.plots, *args.plots.parents):
            if p.exists() and not p.is_dir():
                return f"--plots {args.plots}: {p} is a file, not a folder"
    return None


def _print_summary(results, profile) -> None:
    print(f"{'ISO':>7} {'K DN/e-':>9} {'PTC R2':>7} {'mode':>6} {'lambda':>7} {'sigma_TL':>9} {'sigma_r':>8} "
          f"{'sigma_g':>8} {'darks':>5} {'flats':>5}")  # fmt: skip
    for r in sorted(results, key=lambda r: r.gain.K):
        g, d = r.gain, r.dark
        print(
            f"{r.iso:>7g} {g.K:>9.4g} {g.r2:>7.4f} {g.mode[:6]:>6} {d.lam:>7.3f} {d.tl_scale:>9.4g} "
            f"{d.row_scale:>8.4g} {d.g_scale:>8.4g} {r.n_dark_files:>5} {r.n_flat_files:>5}"
        )
    for key, f in profile["calibration"]["fits"].items():
        print(
            f"  ln {key} = {f['slope']:.4f} ln K + {f['bias']:.4f}  (residual sigma {f['sigma']:.4f}; "
            f"s.e. slope {f['slope_se']:.3g}, bias {f['bias_se']:.3g})"
        )


def run(args: argparse.Namespace) -> int:
    from darkseg.synth.calibrate import CalibrationError
    from darkseg.utils.io import atomic_write_json
    from darkseg.utils.outputs import check_file, check_paths, claim_file

    name = args.name or args.out.stem
    inputs = [args.dark, args.flat, *(args.dng_profile or [])]
    try:  # before any work: never over an input, never over a file no calibrate run wrote
        check_file(args.out, "calibrate", inputs)
        check_paths("calibrate", inputs, folders=[args.plots])
    except ValueError as exc:
        print(f"darkseg calibrate: error: {exc}", file=sys.stderr)
        return 2
    if args.dng_profile:
        if args.dark or args.flat:
            print(
                "darkseg calibrate: error: --dng-profile does not combine with --dark/--flat", file=sys.stderr
            )
            return 2
        from darkseg.synth.dng_profile import profile_from_dngs
        from darkseg.synth.noise import CameraProfile

        try:
            profile, lines = profile_from_dngs(args.dng_profile, name)
            CameraProfile.from_dict(profile, str(args.out))
        except (ValueError, OSError) as exc:
            print(f"darkseg calibrate: error: {exc}", file=sys.stderr)
            return 2
        claim_file(args.out, "calibrate", inputs)
        atomic_write_json(args.out, profile, indent=1)
        for line in lines:
            print(line)
        print(f"darkseg calibrate: wrote {args.out} (Poisson-Gaussian only: use it with --noise-model PG)")
        return 0
    if args.dark is None or args.flat is None:
        print("darkseg calibrate: error: give --dark and --flat (or --dng-profile FILE...)", file=sys.stderr)
        return 2
    problem = _check_options(args)
    if problem is not None:
        print(f"darkseg calibrate: error: {problem}", file=sys.stderr)
        return 2

    from darkseg.synth.calibrate_frames import calibrate_frameset, load_frames
    from darkseg.synth.noise import CameraProfile

    defaults = {"black_level": args.black, "white_level": args.white, "cfa_pattern": args.cfa}
    try:
        fs = load_frames(args.dark, args.flat, crop=args.crop or None, defaults=defaults,
                         progress=not args.no_progress)  # fmt: skip
        for path, why in fs.skipped:
            print(f"  skipped: {path}: {why}", file=sys.stderr)
        for note in fs.notes:
            print(f"  note: {note}", file=sys.stderr)
        n_notes = len(fs.notes)
        profile, results, fits = calibrate_frameset(fs, name, tile=args.tile, progress=not args.no_progress)
        CameraProfile.from_dict(profile, str(args.out))  # the schema darkseg loads
        for note in fs.notes[n_notes:]:  # added by the analysis (interpolated K, ...)
            print(f"  note: {note}", file=sys.stderr)
    except (CalibrationError, FileNotFoundError, ValueError) as exc:
        print(f"darkseg calibrate: error: {exc}", file=sys.stderr)
        return 2
    from darkseg.synth.calibrate_plots import plot_names, write_plots
    from darkseg.utils.outputs import OutputRecord

    try:
        if args.plots:
            OutputRecord(args.plots, "calibrate").claim(plot_names(results))
        claim_file(args.out, "calibrate", inputs)
    except ValueError as exc:  # OutputError: a file in the way of a plot
        print(f"darkseg calibrate: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_json(args.out, profile, indent=1)
    _print_summary(results, profile)
    if args.plots:
        written = write_plots(results, fits, args.plots)
        print(f"darkseg calibrate: {len(written)} plots in {args.plots}")
    print(
        f"darkseg calibrate: wrote {args.out} ({len(results)} ISOs, {len(fs.skipped)} files skipped); "
        f"use it with --camera {args.out}"
    )
    return 0
