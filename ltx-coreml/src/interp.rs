//! A reference interpreter for the exporter's MIL op subset, on Candle's CPU backend.
//!
//! It parses a written package (manifest, protobuf, weight blob), evaluates the `main` function
//! op by op and checks every declared output type against what it computed, so a wrong shape
//! annotation, a bad blob offset or a mis-ordered weight shows up on Linux. Arithmetic is f32 (f64
//! with [`Interpreter::wide`]);
//! values declared fp16 are rounded to fp16 after every op, which models fp16 storage between
//! ops (Core ML's GPU/ANE kernels also accumulate inside an op at higher precision).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};

use crate::blob::{BlobDType, BlobReader};
use crate::error::{CoreMlError, Result};
use crate::mil::MilDType;
use crate::package::{invalid, read_model, PackageMeta, WEIGHTS_DIR};
use crate::proto;

/// A value during interpretation.
#[derive(Clone, Debug)]
enum Val {
    /// Float tensor (held as f32) with its MIL dtype.
    F(Tensor, MilDType),
    Ints(Vec<i64>, Vec<usize>),
    Bools(Vec<bool>),
    Str(String),
}

/// A parsed package ready to run.
pub struct Interpreter {
    ops: Vec<proto::Operation>,
    inputs: Vec<(String, MilDType, Vec<usize>)>,
    outputs: Vec<String>,
    blob: Option<BlobReader>,
    path: PathBuf,
    pub meta: PackageMeta,
    /// Float type the arithmetic runs in (f32; f64 for [`Interpreter::wide`]).
    compute: DType,
}

fn shape_of(t: &proto::ValueType) -> Option<(MilDType, Vec<usize>)> {
    let tt = t.tensor_type.as_ref()?;
    let dims = tt
        .dimensions
        .iter()
        .map(|d| d.constant.as_ref().map(|c| c.size as usize))
        .collect::<Option<Vec<_>>>()?;
    Some((MilDType::from_code(tt.data_type)?, dims))
}

impl Interpreter {
    pub fn load(path: &Path) -> Result<Self> {
        let model = read_model(path)?;
        let meta = PackageMeta::from_model(&model, path)?;
        let program = model
            .ml_program
            .ok_or_else(|| invalid(path, "not an ML Program"))?;
        let main = program
            .functions
            .get("main")
            .ok_or_else(|| invalid(path, "no `main` function"))?;
        let block = main
            .block_specializations
            .get(&main.opset)
            .ok_or_else(|| invalid(path, format!("no block for opset `{}`", main.opset)))?;
        let inputs = main
            .inputs
            .iter()
            .map(|i| {
                let (d, s) = i.r#type.as_ref().and_then(shape_of).ok_or_else(|| {
                    invalid(path, format!("input `{}` has no tensor type", i.name))
                })?;
                Ok((i.name.clone(), d, s))
            })
            .collect::<Result<_>>()?;
        let wfile = path.join(WEIGHTS_DIR).join("weight.bin");
        let blob = if wfile.exists() {
            Some(BlobReader::open(&wfile)?)
        } else {
            None
        };
        Ok(Self {
            ops: block.operations.clone(),
            inputs,
            outputs: block.outputs.clone(),
            blob,
            path: path.to_path_buf(),
            meta,
            compute: DType::F32,
        })
    }

    /// Runs the arithmetic in f64 (fp16 roundings still applied where the program is fp16):
    /// against a Candle module run in f64, the comparison then shows the graph's semantics and
    /// weight layout, free of f32 summation-order noise.
    pub fn wide(mut self) -> Self {
        self.compute = DType::F64;
        self
    }

    /// Runs the program on its single input; returns its single output.
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        let (name, dtype, shape) = self
            .inputs
            .first()
            .ok_or_else(|| invalid(&self.path, "the function has no input"))?;
        if input.dims() != shape.as_slice() {
            return Err(CoreMlError::InvalidShape(format!(
                "input `{name}` must have shape {shape:?}, got {:?}",
                input.dims()
            )));
        }
        let mut env: HashMap<String, Val> = HashMap::new();
        let x = round(
            input.to_dtype(self.compute)?.to_device(&Device::Cpu)?,
            *dtype,
        )?;
        env.insert(name.clone(), Val::F(x, *dtype));
        for op in &self.ops {
            let out = op
                .outputs
                .first()
                .ok_or_else(|| invalid(&self.path, format!("op `{}` has no output", op.r#type)))?;
            let val = self.eval(op, &env).map_err(|e| match e {
                CoreMlError::Interp { .. } | CoreMlError::CorruptBlob { .. } => e,
                other => CoreMlError::Interp {
                    op: out.name.clone(),
                    kind: op.r#type.clone(),
                    reason: other.to_string(),
                },
            })?;
            check_declared(&val, out).map_err(|reason| CoreMlError::Interp {
                op: out.name.clone(),
                kind: op.r#type.clone(),
                reason,
            })?;
            env.insert(out.name.clone(), val);
        }
        let oname = self
            .outputs
            .first()
            .ok_or_else(|| invalid(&self.path, "the function has no output"))?;
        match env.remove(oname) {
            Some(Val::F(t, _)) => Ok(t),
            _ => Err(invalid(
                &self.path,
                format!("output `{oname}` is not a float tensor"),
            )),
        }
    }

    fn constant(&self, op: &proto::Operation) -> Result<Val> {
        let bad = |r: &str| CoreMlError::Interp {
            op: op
                .outputs
                .first()
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            kind: "const".into(),
            reason: r.to_string(),
        };
        let v = op.attributes.get("val").ok_or_else(|| bad("no `val`"))?;
        let (dtype, shape) = v
            .r#type
            .as_ref()
            .and_then(shape_of)
            .ok_or_else(|| bad("no tensor type"))?;
        let numel: usize = shape.iter().product();
        if let Some(bf) = &v.blob_file_value {
            let blob = self.blob.as_ref().ok_or_else(|| bad("no weight file"))?;
            let (bd, bytes) = blob.get(bf.offset)?;
            let want = match dtype {
                MilDType::F16 => BlobDType::F16,
                MilDType::F32 => BlobDType::F32,
                _ => return Err(bad("blob value of a non-float type")),
            };
            if bd != want || bytes.len() != numel * bd.size() {
                return Err(CoreMlError::CorruptBlob {
                    path: self.path.join(WEIGHTS_DIR).join("weight.bin"),
                    reason: format!(
                        "blob at offset {} holds {} bytes of {bd:?}, the program expects {numel} {dtype:?}",
                        bf.offset,
                        bytes.len()
                    ),
                });
            }
            let vals: Vec<f32> = match bd {
                BlobDType::F16 => bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                BlobDType::F32 => bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            };
            return Ok(Val::F(
                Tensor::from_vec(vals, shape, &Device::Cpu)?.to_dtype(self.compute)?,
                dtype,
            ));
        }
        let tv = v
            .immediate_value
            .as_ref()
            .and_then(|i| i.tensor.as_ref())
            .ok_or_else(|| bad("no value"))?;
        let val = match dtype {
            MilDType::F32 | MilDType::F16 => {
                let vals: Vec<f32> = if let Some(f) = &tv.floats {
                    f.values.clone()
                } else if let Some(b) = &tv.bytes {
                    b.values
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect()
                } else {
                    return Err(bad("float constant without floats or bytes"));
                };
                if vals.len() != numel {
                    return Err(bad("element count differs from the declared shape"));
                }
                Val::F(
                    Tensor::from_vec(vals, shape, &Device::Cpu)?.to_dtype(self.compute)?,
                    dtype,
                )
            }
            MilDType::I32 => {
                let v = tv
                    .ints
                    .as_ref()
                    .ok_or_else(|| bad("int constant without ints"))?;
                Val::Ints(v.values.iter().map(|&x| x as i64).collect(), shape)
            }
            MilDType::Bool => Val::Bools(
                tv.bools
                    .as_ref()
                    .ok_or_else(|| bad("bool constant without bools"))?
                    .values
                    .clone(),
            ),
            MilDType::Str => Val::Str(
                tv.strings
                    .as_ref()
                    .and_then(|s| s.values.first().cloned())
                    .ok_or_else(|| bad("string constant without a string"))?,
            ),
        };
        Ok(val)
    }

    fn eval(&self, op: &proto::Operation, env: &HashMap<String, Val>) -> Result<Val> {
        if op.r#type == "const" {
            return self.constant(op);
        }
        let oname = op
            .outputs
            .first()
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let fail = |reason: String| CoreMlError::Interp {
            op: oname.clone(),
            kind: op.r#type.clone(),
            reason,
        };
        let arg = |k: &str| -> Result<&Val> {
            let a = op
                .inputs
                .get(k)
                .and_then(|a| a.arguments.first())
                .and_then(|b| b.name.as_ref())
                .ok_or_else(|| fail(format!("missing input `{k}`")))?;
            env.get(a)
                .ok_or_else(|| fail(format!("input `{k}` refers to unknown value `{a}`")))
        };
        let opt = |k: &str| -> Option<&Val> { arg(k).ok() };
        let ft = |k: &str| -> Result<(Tensor, MilDType)> {
            match arg(k)? {
                Val::F(t, d) => Ok((t.clone(), *d)),
                _ => Err(fail(format!("input `{k}` is not a float tensor"))),
            }
        };
        let ints = |k: &str| -> Result<Vec<i64>> {
            match arg(k)? {
                Val::Ints(v, _) => Ok(v.clone()),
                _ => Err(fail(format!("input `{k}` is not an int tensor"))),
            }
        };
        let string = |k: &str| -> Result<String> {
            match arg(k)? {
                Val::Str(s) => Ok(s.clone()),
                _ => Err(fail(format!("input `{k}` is not a string"))),
            }
        };
        let ax = |v: i64, rank: usize| -> usize {
            if v < 0 {
                (v + rank as i64) as usize
            } else {
                v as usize
            }
        };
        let out = |t: Tensor, d: MilDType| -> Result<Val> { Ok(Val::F(round(t, d)?, d)) };
        let binary = |f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>| -> Result<Val> {
            let (x, dx) = ft("x")?;
            let (y, dy) = ft("y")?;
            if dx != dy {
                return Err(fail(format!("dtypes {dx:?} and {dy:?} differ")));
            }
            out(f(&x, &y)?, dx)
        };
        match op.r#type.as_str() {
            "add" => binary(|a, b| a.broadcast_add(b)),
            "sub" => binary(|a, b| a.broadcast_sub(b)),
            "mul" => binary(|a, b| a.broadcast_mul(b)),
            "real_div" => binary(|a, b| a.broadcast_div(b)),
            "maximum" => binary(|a, b| a.broadcast_maximum(b)),
            "silu" => {
                let (x, d) = ft("x")?;
                out(x.silu()?, d)
            }
            "abs" => {
                let (x, d) = ft("x")?;
                out(x.abs()?, d)
            }
            "rsqrt" => {
                let (x, d) = ft("x")?;
                let eps = match opt("epsilon") {
                    Some(Val::F(e, _)) => {
                        e.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0]
                    }
                    _ => round_scalar(1e-12, d),
                };
                out((x + eps)?.sqrt()?.recip()?, d)
            }
            "cast" => {
                let (x, _) = ft("x")?;
                let d = match string("dtype")?.as_str() {
                    "fp16" => MilDType::F16,
                    "fp32" => MilDType::F32,
                    other => return Err(fail(format!("cast to `{other}` is not supported"))),
                };
                out(x, d)
            }
            "reduce_mean" | "reduce_max" => {
                let (x, d) = ft("x")?;
                let keep =
                    matches!(opt("keep_dims"), Some(Val::Bools(b)) if b.first() == Some(&true));
                let mut axes: Vec<usize> = match opt("axes") {
                    Some(Val::Ints(v, _)) => v.iter().map(|&a| ax(a, x.rank())).collect(),
                    _ => (0..x.rank()).collect(),
                };
                axes.sort_unstable();
                let mut y = x;
                for &a in &axes {
                    y = if op.r#type == "reduce_mean" {
                        y.mean_keepdim(a)?
                    } else {
                        y.max_keepdim(a)?
                    };
                }
                if !keep {
                    for &a in axes.iter().rev() {
                        y = y.squeeze(a)?;
                    }
                }
                out(y, d)
            }
            "reshape" => {
                let (x, d) = ft("x")?;
                let s: Vec<usize> = ints("shape")?.iter().map(|&v| v as usize).collect();
                out(x.reshape(s)?, d)
            }
            "transpose" => {
                let (x, d) = ft("x")?;
                let p: Vec<usize> = ints("perm")?.iter().map(|&v| ax(v, x.rank())).collect();
                out(x.permute(p)?.contiguous()?, d)
            }
            "concat" => {
                let names = &op
                    .inputs
                    .get("values")
                    .ok_or_else(|| fail("missing input `values`".into()))?
                    .arguments;
                let mut ts = Vec::new();
                let mut dtype = None;
                for b in names {
                    let n = b
                        .name
                        .as_ref()
                        .ok_or_else(|| fail("inline concat value".into()))?;
                    match env.get(n) {
                        Some(Val::F(t, d)) => {
                            ts.push(t.clone());
                            dtype = Some(*d);
                        }
                        _ => return Err(fail(format!("concat input `{n}` is unknown"))),
                    }
                }
                let rank = ts.first().map(|t| t.rank()).unwrap_or(0);
                let a = ax(ints("axis")?[0], rank);
                if matches!(opt("interleave"), Some(Val::Bools(b)) if b.first() == Some(&true)) {
                    return Err(fail("interleave is not supported".into()));
                }
                out(Tensor::cat(&ts, a)?, dtype.unwrap_or(MilDType::F32))
            }
            "slice_by_index" => {
                let (x, d) = ft("x")?;
                let (b, e) = (ints("begin")?, ints("end")?);
                let s = match opt("stride") {
                    Some(Val::Ints(v, _)) => v.clone(),
                    _ => vec![1; x.rank()],
                };
                if opt("begin_mask").is_some()
                    || opt("end_mask").is_some()
                    || opt("squeeze_mask").is_some()
                {
                    return Err(fail("slice masks are not supported".into()));
                }
                let mut y = x.clone();
                for i in 0..x.rank() {
                    let n = x.dim(i)? as i64;
                    let norm = |v: i64| if v < 0 { v + n } else { v }.clamp(0, n) as usize;
                    let (bi, ei, si) = (norm(b[i]), norm(e[i]), s[i]);
                    if si <= 0 || bi >= ei {
                        return Err(fail(format!("slice {bi}..{ei} step {si} on axis {i}")));
                    }
                    if si == 1 {
                        y = y.narrow(i, bi, ei - bi)?;
                    } else {
                        let idx: Vec<u32> =
                            (bi..ei).step_by(si as usize).map(|v| v as u32).collect();
                        let idx = Tensor::new(idx, &Device::Cpu)?;
                        y = y.index_select(&idx, i)?;
                    }
                }
                out(y.contiguous()?, d)
            }
            "pad" => {
                let (x, d) = ft("x")?;
                let p = ints("pad")?;
                let mode = string("mode")?;
                let cval = match opt("constant_val") {
                    Some(Val::F(c, _)) => {
                        c.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?[0]
                    }
                    _ => 0.0,
                };
                let n = p.len() / 2;
                if p.len() % 2 != 0 || n > x.rank() {
                    return Err(fail(format!("pad {p:?} for rank {}", x.rank())));
                }
                if mode != "constant" && (n > 2 && p[..2 * (n - 2)].iter().any(|&v| v != 0)) {
                    return Err(fail(format!("{mode} padding beyond the last two axes")));
                }
                let mut y = x.clone();
                for i in 0..n {
                    let dim = x.rank() - n + i;
                    let (a, b) = (p[2 * i] as usize, p[2 * i + 1] as usize);
                    if a == 0 && b == 0 {
                        continue;
                    }
                    y = match mode.as_str() {
                        "constant" => {
                            let z = (y.pad_with_zeros(dim, a, b)? + 0.0)?;
                            if cval != 0.0 {
                                return Err(fail("non-zero constant padding".into()));
                            }
                            z
                        }
                        "replicate" => y.pad_with_same(dim, a, b)?,
                        "reflect" => reflect(&y, dim, a, b)?,
                        other => return Err(fail(format!("pad mode `{other}`"))),
                    };
                }
                out(y, d)
            }
            "conv" => {
                let (x, d) = ft("x")?;
                let (w, _) = ft("weight")?;
                let stride = ints("strides")?;
                let dil = ints("dilations")?;
                let groups = match opt("groups") {
                    Some(Val::Ints(v, _)) => v[0] as usize,
                    _ => 1,
                };
                let pad_type = string("pad_type")?;
                let pad = if pad_type == "custom" {
                    ints("pad")?
                } else if pad_type == "valid" {
                    vec![0; 4]
                } else {
                    return Err(fail(format!("pad_type `{pad_type}`")));
                };
                if x.rank() != 4 || stride.len() != 2 || stride[0] != stride[1] || dil != [1, 1] {
                    return Err(fail(
                        "only 2-D convs with equal strides and no dilation".into(),
                    ));
                }
                let x = x
                    .pad_with_zeros(2, pad[0] as usize, pad[1] as usize)?
                    .pad_with_zeros(3, pad[2] as usize, pad[3] as usize)?;
                let mut y = x.conv2d(&w, 0, stride[0] as usize, 1, groups)?;
                if let Some(Val::F(b, _)) = opt("bias") {
                    y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?;
                }
                out(y, d)
            }
            other => Err(fail(format!(
                "op `{other}` is not in the interpreter's subset"
            ))),
        }
    }
}

/// Rounds `t` to fp16 when `d` is fp16 (values keep the tensor's float type).
fn round(t: Tensor, d: MilDType) -> Result<Tensor> {
    Ok(match d {
        MilDType::F16 => {
            let keep = t.dtype();
            t.to_dtype(DType::F16)?.to_dtype(keep)?
        }
        _ => t,
    })
}

fn round_scalar(x: f64, d: MilDType) -> f64 {
    match d {
        MilDType::F16 => half::f16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// PyTorch-style reflect padding (edge not repeated) of one axis.
fn reflect(x: &Tensor, dim: usize, a: usize, b: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    if a >= n || b >= n {
        return Err(CoreMlError::InvalidShape(format!(
            "reflect padding ({a}, {b}) of an axis of {n}"
        )));
    }
    let idx: Vec<u32> = (0..a)
        .map(|i| (a - i) as u32)
        .chain((0..n).map(|i| i as u32))
        .chain((0..b).map(|i| (n - 2 - i) as u32))
        .collect();
    let idx = Tensor::new(idx, &Device::Cpu)?;
    Ok(x.index_select(&idx, dim)?)
}

fn check_declared(val: &Val, decl: &proto::NamedValueType) -> std::result::Result<(), String> {
    let (dd, ds) = decl
        .r#type
        .as_ref()
        .and_then(shape_of)
        .ok_or("output has no tensor type")?;
    let (d, s): (MilDType, Vec<usize>) = match val {
        Val::F(t, d) => (*d, t.dims().to_vec()),
        Val::Ints(_, s) => (MilDType::I32, s.clone()),
        Val::Bools(b) => (
            MilDType::Bool,
            if b.len() == 1 { vec![] } else { vec![b.len()] },
        ),
        Val::Str(_) => (MilDType::Str, vec![]),
    };
    if d != dd || s != ds {
        return Err(format!(
            "computed {d:?}{s:?}, the program declares {dd:?}{ds:?}"
        ));
    }
    Ok(())
}

/// Max absolute difference of two tensors of equal shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(CoreMlError::InvalidShape(format!(
            "comparing {:?} with {:?}",
            a.dims(),
            b.dims()
        )));
    }
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?;
    Ok(d.flatten_all()?.max(D::Minus1)?.to_scalar::<f64>()? as f32)
}
