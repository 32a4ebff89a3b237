"""Structural check of .mlpackage files written by ltx-coreml.

Loads each package's spec with coremltools and rebuilds the PyMIL program through the milproto
loader, which re-runs every op's type and shape inference against the declared types and reads
every weight blob. Prints one line per package and exits non-zero on the first failure.

Usage: validate_mlpackage.py PKG.mlpackage [...]
"""
import os
import sys


def main(paths):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    for path in paths:
        spec = ct.utils.load_spec(path)
        weights = os.path.join(path, "Data", "com.apple.CoreML", "weights")
        prog = load(spec, spec.specificationVersion, weights)
        func = prog.functions["main"]
        n_ops = len(list(func.operations))
        ins = {k: tuple(v.shape) for k, v in func.inputs.items()}
        outs = [(o.name, tuple(o.shape), o.dtype.__name__) for o in func.outputs]
        ranks = {len(v.shape) for op in func.operations for v in op.outputs}
        print(
            f"OK {os.path.basename(path)} spec={spec.specificationVersion} "
            f"opset={func.opset_version} ops={n_ops} inputs={ins} outputs={outs} max_rank={max(ranks)}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1:])
