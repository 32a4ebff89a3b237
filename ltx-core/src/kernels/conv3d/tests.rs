//! Tests of the whole module: every path (Winograd, direct implicit GEMM, generic) against an
//! independent naive conv3d, chunking and banding, time padding, half-precision inputs, the one
//! conv2d per forward rule, and errors instead of panics.

use super::plan::LAST_PLAN;
use super::*;
use crate::test_utils::max_abs_diff;

/// Independent direct conv3d (f64 accumulation) on flat NCTHW data.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    (b, cin, fp, h, w): (usize, usize, usize, usize, usize),
    wt: &[f32],
    (cout, kt, kh, kw): (usize, usize, usize, usize),
    bias: Option<&[f32]>,
    spec: Conv3dSpec,
) -> (Vec<f32>, [usize; 5]) {
    let p = spec.spatial_pad as isize;
    let (hp, wp) = (h + 2 * spec.spatial_pad, w + 2 * spec.spatial_pad);
    let s = spec.spatial_stride;
    let fo = (fp - kt) / spec.time_stride + 1;
    let ho = (hp - kh) / s + 1;
    let wo = (wp - kw) / s + 1;
    let fetch = |i: isize, n: usize| -> Option<usize> {
        let n = n as isize;
        let j = match spec.pad_mode {
            _ if (0..n).contains(&i) => i,
            PadMode::Zeros => return None,
            PadMode::Replicate => i.max(0).min(n - 1),
            PadMode::Reflect => {
                if i < 0 {
                    -i
                } else {
                    2 * n - 2 - i
                }
            }
        };
        Some(j as usize)
    };
    let mut out = vec![0f32; b * cout * fo * ho * wo];
    for bi in 0..b {
        for co in 0..cout {
            for f in 0..fo {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = bias.map_or(0.0, |bb| bb[co] as f64);
                        for c in 0..cin {
                            for k in 0..kt {
                                let t = f * spec.time_stride + k;
                                for i in 0..kh {
                                    let Some(hh) = fetch((oh * s + i) as isize - p, h) else {
                                        continue;
                                    };
                                    for j in 0..kw {
                                        let Some(ww) = fetch((ow * s + j) as isize - p, w) else {
                                            continue;
                                        };
                                        let xv =
                                            x[(((bi * cin + c) * fp + t) * h + hh) * w + ww] as f64;
                                        let wv = wt[(((co * cin + c) * kt + k) * kh + i) * kw + j]
                                            as f64;
                                        acc += xv * wv;
                                    }
                                }
                            }
                        }
                        out[(((bi * cout + co) * fo + f) * ho + oh) * wo + ow] = acc as f32;
                    }
                }
            }
        }
    }
    (out, [b, cout, fo, ho, wo])
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut num = 0f64;
    let mut den = 0f64;
    for (x, y) in a.iter().zip(b) {
        num = num.max((*x as f64 - *y as f64).abs());
        den = den.max((*y as f64).abs());
    }
    num / den.max(1e-30)
}

struct Case {
    x: [usize; 5],
    cout: usize,
    k: (usize, usize, usize),
    spec: Conv3dSpec,
    bias: bool,
}

fn case(
    x: [usize; 5],
    cout: usize,
    k: (usize, usize, usize),
    spec: Conv3dSpec,
    bias: bool,
) -> Case {
    Case {
        x,
        cout,
        k,
        spec,
        bias,
    }
}

fn spec(ts: usize, s: usize, pad: usize, mode: PadMode) -> Conv3dSpec {
    Conv3dSpec {
        time_pad: (0, 0),
        time_stride: ts,
        spatial_stride: s,
        spatial_pad: pad,
        pad_mode: mode,
    }
}

/// Which implementation a test drives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// CPU fast path with Winograd forced for 3x3 spatial kernels.
    Fast,
    /// CPU fast path with the direct implicit GEMM for every kernel.
    Direct,
    /// Candle-ops generic path.
    Generic,
}
const PATHS: [Path; 3] = [Path::Fast, Path::Direct, Path::Generic];

/// Runs `f` with this thread's knobs set for `path` and the chunk `budget`, then restores the
/// defaults.
fn on_path<R>(path: Path, budget: Option<usize>, f: impl FnOnce() -> R) -> R {
    knobs::set_winograd(Some(path == Path::Fast));
    knobs::set_force_generic(path == Path::Generic);
    knobs::set_chunk_budget(budget);
    let r = f();
    knobs::set_winograd(None);
    knobs::set_force_generic(false);
    knobs::set_chunk_budget(None);
    r
}

/// All elements of `t` as f32, flattened.
fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Runs one case through the requested path; returns (rel error, conv2d calls).
fn check(case: &Case, path: Path, budget: Option<usize>) -> (f64, usize) {
    let dev = Device::Cpu;
    let [b, cin, fp, h, w] = case.x;
    let (kt, kh, kw) = case.k;
    let xt = Tensor::randn(0f32, 1.0, (b, cin, fp, h, w), &dev).unwrap();
    let wt = Tensor::randn(0f32, 0.3, (case.cout, cin, kt, kh, kw), &dev).unwrap();
    let bt = Tensor::randn(0f32, 1.0, case.cout, &dev).unwrap();
    let weights = Conv3dWeights::new(&wt, case.bias.then_some(&bt)).unwrap();
    let (y, calls) = on_path(path, budget, || {
        let before = conv2d_call_count();
        let y = weights.forward(&xt, case.spec).unwrap();
        (y, conv2d_call_count() - before)
    });
    let bv = flat(&bt);
    let (want, dims) = naive(
        &flat(&xt),
        (b, cin, fp, h, w),
        &flat(&wt),
        (case.cout, kt, kh, kw),
        case.bias.then_some(bv.as_slice()),
        case.spec,
    );
    assert_eq!(y.dims(), dims, "shape for {:?}", case.spec);
    assert_eq!(y.dtype(), DType::F32);
    (rel_err(&flat(&y), &want), calls)
}

fn cases() -> Vec<Case> {
    use PadMode::*;
    vec![
        case([1, 5, 6, 7, 9], 7, (3, 3, 3), spec(1, 1, 1, Zeros), true),
        case([2, 5, 5, 6, 8], 7, (3, 3, 3), spec(1, 1, 1, Reflect), true),
        case(
            [1, 6, 4, 9, 5],
            3,
            (3, 3, 3),
            spec(1, 1, 1, Replicate),
            false,
        ),
        case([2, 5, 4, 6, 7], 7, (1, 1, 1), spec(1, 1, 0, Zeros), true),
        case([1, 5, 7, 6, 7], 7, (1, 1, 1), spec(2, 1, 0, Zeros), true),
        case([1, 4, 9, 8, 6], 5, (3, 3, 3), spec(2, 1, 1, Zeros), true),
        case([2, 3, 7, 6, 8], 4, (3, 3, 3), spec(2, 1, 1, Reflect), true),
        case(
            [1, 4, 5, 9, 8],
            6,
            (3, 3, 3),
            spec(1, 1, 2, Replicate),
            true,
        ),
        case([1, 3, 4, 5, 6], 5, (2, 3, 1), spec(1, 1, 0, Zeros), true),
        case([1, 3, 5, 7, 6], 5, (3, 5, 5), spec(1, 1, 2, Reflect), true),
        case(
            [2, 4, 4, 5, 6],
            3,
            (2, 1, 3),
            spec(1, 1, 1, Replicate),
            true,
        ),
        case([1, 5, 5, 6, 5], 6, (3, 1, 1), spec(1, 1, 0, Zeros), true),
        case([1, 5, 4, 1, 1], 6, (3, 3, 3), spec(1, 1, 1, Zeros), true),
        case(
            [1, 20, 5, 12, 10],
            24,
            (3, 3, 3),
            spec(1, 1, 1, Zeros),
            true,
        ),
        case(
            [1, 48, 5, 10, 9],
            40,
            (3, 3, 3),
            spec(1, 1, 1, Reflect),
            true,
        ),
    ]
}

#[test]
fn all_paths_match_naive() {
    for path in PATHS {
        let mut worst = 0f64;
        for case in cases() {
            let (err, calls) = check(&case, path, None);
            assert!(
                err <= 1e-5,
                "{path:?} {:?} k{:?} {:?}: rel err {err}",
                case.x,
                case.k,
                case.spec
            );
            assert_eq!(calls, 1, "{path:?}");
            worst = worst.max(err);
        }
        eprintln!("{path:?}: worst relative max error {worst:.2e}");
    }
}

#[test]
fn spatial_stride_two_generic() {
    use PadMode::*;
    for (mode, ts) in [(Zeros, 1), (Reflect, 2), (Replicate, 1)] {
        let case = case([2, 5, 7, 9, 8], 7, (3, 3, 3), spec(ts, 2, 1, mode), true);
        // spatial stride 2 goes to the generic path on its own.
        let (err, calls) = check(&case, Path::Fast, None);
        assert!(err <= 1e-5, "{mode:?}: rel err {err}");
        assert_eq!(calls, 1);
    }
}

#[test]
fn temporal_chunks_and_row_bands() {
    use PadMode::*;
    let big = case([2, 5, 11, 9, 7], 7, (3, 3, 3), spec(1, 1, 1, Reflect), true);
    let strided = case([1, 5, 12, 8, 7], 6, (3, 3, 3), spec(2, 1, 1, Zeros), true);
    let s2 = case(
        [1, 4, 9, 10, 9],
        5,
        (3, 3, 3),
        spec(1, 2, 1, Replicate),
        true,
    );
    let k5 = case(
        [1, 3, 8, 11, 6],
        4,
        (2, 5, 3),
        spec(1, 1, 2, Replicate),
        true,
    );
    for path in PATHS {
        for case in [&big, &strided, &s2, &k5] {
            let (mut saw_chunks, mut saw_bands) = (false, false);
            for e in 0..26 {
                let budget = 1usize << e;
                let (err, calls) = check(case, path, Some(budget));
                assert!(
                    err <= 1e-5,
                    "{path:?} budget {budget} {:?}: rel err {err}",
                    case.spec
                );
                let (fc, rc, fo, ho) = LAST_PLAN.with(|c| c.get());
                assert_eq!(calls, fo.div_ceil(fc) * ho.div_ceil(rc));
                saw_chunks |= rc == ho && 1 < fc && fc < fo;
                saw_bands |= rc < ho;
            }
            assert!(saw_chunks && saw_bands, "{path:?} {:?}", case.spec);
        }
    }
}

#[test]
fn time_padding_in_place_matches_padded_input() {
    let dev = Device::Cpu;
    let xt = Tensor::randn(0f32, 1.0, (2, 5, 4, 6, 7), &dev).unwrap();
    let wt = Tensor::randn(0f32, 0.3, (3, 5, 3, 3, 3), &dev).unwrap();
    let weights = Conv3dWeights::new(&wt, None).unwrap();
    for (front, back) in [(2, 0), (1, 1), (0, 2)] {
        let padded = xt.pad_with_same(2, front, back).unwrap();
        let want = weights
            .forward(&padded, spec(1, 1, 1, PadMode::Replicate))
            .unwrap();
        for generic in [false, true] {
            knobs::set_force_generic(generic);
            let sp = Conv3dSpec {
                time_pad: (front, back),
                ..spec(1, 1, 1, PadMode::Replicate)
            };
            let got = weights.forward(&xt, sp).unwrap();
            knobs::set_force_generic(false);
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-5, "pad ({front}, {back}) generic={generic}: {d}");
        }
    }
}

#[test]
fn bf16_and_f16_inputs() {
    let dev = Device::Cpu;
    let xt = Tensor::randn(0f32, 1.0, (1, 5, 5, 6, 7), &dev).unwrap();
    let wt = Tensor::randn(0f32, 0.3, (7, 5, 3, 3, 3), &dev).unwrap();
    let bt = Tensor::randn(0f32, 1.0, 7, &dev).unwrap();
    let sp = spec(1, 1, 1, PadMode::Zeros);
    let want = Conv3dWeights::new(&wt, Some(&bt))
        .unwrap()
        .forward(&xt, sp)
        .unwrap();
    for dt in [DType::BF16, DType::F16] {
        for path in PATHS {
            let weights =
                Conv3dWeights::new(&wt.to_dtype(dt).unwrap(), Some(&bt.to_dtype(dt).unwrap()))
                    .unwrap();
            let xd = xt.to_dtype(dt).unwrap();
            let y = on_path(path, None, || weights.forward(&xd, sp).unwrap());
            assert_eq!(y.dtype(), dt);
            let err = rel_err(&flat(&y), &flat(&want));
            assert!(err < 3e-2, "{dt:?} {path:?}: rel err {err}");
        }
    }
}

#[test]
fn one_conv2d_per_forward() {
    let dev = Device::Cpu;
    let xt = Tensor::randn(0f32, 1.0, (2, 4, 6, 8, 8), &dev).unwrap();
    let wt = Tensor::randn(0f32, 1.0, (6, 4, 3, 3, 3), &dev).unwrap();
    let weights = Conv3dWeights::new(&wt, None).unwrap();
    for generic in [false, true] {
        for sp in [
            spec(1, 1, 1, PadMode::Zeros),
            spec(2, 1, 1, PadMode::Reflect),
            spec(1, 2, 0, PadMode::Zeros),
        ] {
            knobs::set_force_generic(generic);
            let before = conv2d_call_count();
            weights.forward(&xt, sp).unwrap();
            knobs::set_force_generic(false);
            assert_eq!(conv2d_call_count() - before, 1, "generic={generic} {sp:?}");
        }
    }
}

#[test]
fn errors_not_panics() {
    let dev = Device::Cpu;
    let wt = Tensor::zeros((4, 3, 3, 3, 3), DType::F32, &dev).unwrap();
    let weights = Conv3dWeights::new(&wt, None).unwrap();
    let sp = spec(1, 1, 1, PadMode::Zeros);
    // wrong rank
    assert!(weights
        .forward(&Tensor::zeros((3, 4, 5, 5), DType::F32, &dev).unwrap(), sp)
        .is_err());
    // channel mismatch
    assert!(weights
        .forward(
            &Tensor::zeros((1, 2, 4, 5, 5), DType::F32, &dev).unwrap(),
            sp
        )
        .is_err());
    // kernel larger than the padded input (time, and space without padding)
    assert!(weights
        .forward(
            &Tensor::zeros((1, 3, 2, 5, 5), DType::F32, &dev).unwrap(),
            sp
        )
        .is_err());
    let nopad = spec(1, 1, 0, PadMode::Zeros);
    assert!(weights
        .forward(
            &Tensor::zeros((1, 3, 4, 2, 5), DType::F32, &dev).unwrap(),
            nopad
        )
        .is_err());
    // reflect padding as large as the image
    let refl = spec(1, 1, 2, PadMode::Reflect);
    assert!(weights
        .forward(
            &Tensor::zeros((1, 3, 4, 2, 5), DType::F32, &dev).unwrap(),
            refl
        )
        .is_err());
    // bad strides, bad weights
    assert!(weights
        .forward(
            &Tensor::zeros((1, 3, 4, 5, 5), DType::F32, &dev).unwrap(),
            spec(0, 1, 1, PadMode::Zeros)
        )
        .is_err());
    assert!(Conv3dWeights::new(
        &Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap(),
        None
    )
    .is_err());
    let bad_bias = Tensor::zeros(5, DType::F32, &dev).unwrap();
    assert!(Conv3dWeights::new(&wt, Some(&bad_bias)).is_err());
}

// TEMPORARY golden dump (bit-exactness check of the refactor); removed afterwards.
#[test]
fn zz_golden_dump() {
    let Ok(path) = std::env::var("CONV3D_GOLDEN_OUT") else {
        return;
    };
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut data = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    };
    let dev = Device::Cpu;
    let mut bits: Vec<u8> = Vec::new();
    let mut all = cases();
    all.push(case(
        [2, 5, 11, 9, 7],
        7,
        (3, 3, 3),
        spec(1, 1, 1, PadMode::Reflect),
        true,
    ));
    all.push(case(
        [1, 5, 12, 8, 7],
        6,
        (3, 3, 3),
        spec(2, 1, 1, PadMode::Zeros),
        true,
    ));
    all.push(case(
        [1, 4, 9, 10, 9],
        5,
        (3, 3, 3),
        spec(1, 2, 1, PadMode::Replicate),
        true,
    ));
    all.push(case(
        [1, 3, 8, 11, 6],
        4,
        (2, 5, 3),
        spec(1, 1, 2, PadMode::Replicate),
        true,
    ));
    all.push(Case {
        x: [1, 32, 4, 20, 20],
        cout: 16,
        k: (3, 3, 3),
        spec: Conv3dSpec {
            time_pad: (2, 0),
            ..spec(1, 1, 1, PadMode::Zeros)
        },
        bias: true,
    });
    all.push(Case {
        x: [2, 5, 4, 6, 7],
        cout: 3,
        k: (3, 3, 3),
        spec: Conv3dSpec {
            time_pad: (1, 1),
            ..spec(1, 1, 1, PadMode::Replicate)
        },
        bias: false,
    });
    for case in &all {
        let [b, cin, fp, h, w] = case.x;
        let (kt, kh, kw) = case.k;
        let xt =
            Tensor::from_vec(data(b * cin * fp * h * w, 1.0), (b, cin, fp, h, w), &dev).unwrap();
        let wt = Tensor::from_vec(
            data(case.cout * cin * kt * kh * kw, 0.3),
            (case.cout, cin, kt, kh, kw),
            &dev,
        )
        .unwrap();
        let bt = Tensor::from_vec(data(case.cout, 1.0), case.cout, &dev).unwrap();
        for dt in [DType::F32, DType::F16, DType::BF16, DType::F64] {
            let weights = Conv3dWeights::new(
                &wt.to_dtype(dt).unwrap(),
                case.bias.then(|| bt.to_dtype(dt).unwrap()).as_ref(),
            )
            .unwrap();
            let xd = xt.to_dtype(dt).unwrap();
            for (wino, generic) in [
                (Some(true), false),
                (Some(false), false),
                (None, false),
                (None, true),
            ] {
                for budget in [
                    None,
                    Some(1usize << 10),
                    Some(1usize << 13),
                    Some(1usize << 16),
                ] {
                    knobs::set_winograd(wino);
                    knobs::set_force_generic(generic);
                    knobs::set_chunk_budget(budget);
                    let y = weights.forward(&xd, case.spec).unwrap();
                    knobs::set_winograd(None);
                    knobs::set_force_generic(false);
                    knobs::set_chunk_budget(None);
                    for v in y
                        .to_dtype(DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                    {
                        bits.extend_from_slice(&v.to_bits().to_le_bytes());
                    }
                }
            }
        }
    }
    std::fs::write(path, bits).unwrap();
}
