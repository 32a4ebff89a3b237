//! A small typed builder for MIL (ML Program) graphs.
//!
//! Every value is a named tensor with a dtype and a fixed shape; each op method infers its
//! output shape, so the `TensorType` declared on every op output is exactly what Core ML's type
//! inference will compute (the milproto loader checks this). Parameters are emitted as separate
//! `const` ops, as coremltools does; large constants are streamed into the weight blob.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::blob::{BlobDType, BlobWriter};
use crate::error::{CoreMlError, Result};
use crate::proto;

/// Path of the weight blob as a program refers to it.
pub const WEIGHT_FILE: &str = "@model_path/weights/weight.bin";
/// Constants with more elements than this go to the blob, smaller ones are inlined.
const INLINE_LIMIT: usize = 16;

/// Element types of MIL values used by the exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilDType {
    F16,
    F32,
    I32,
    Bool,
    Str,
}

impl MilDType {
    pub fn code(self) -> i32 {
        match self {
            Self::F16 => proto::data_type::FLOAT16,
            Self::F32 => proto::data_type::FLOAT32,
            Self::I32 => proto::data_type::INT32,
            Self::Bool => proto::data_type::BOOL,
            Self::Str => proto::data_type::STRING,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        [Self::F16, Self::F32, Self::I32, Self::Bool, Self::Str]
            .into_iter()
            .find(|d| d.code() == code)
    }

    /// The name `cast` takes.
    pub fn cast_name(self) -> &'static str {
        match self {
            Self::F16 => "fp16",
            Self::F32 => "fp32",
            Self::I32 => "int32",
            Self::Bool => "bool",
            Self::Str => "string",
        }
    }
}

/// A value in the graph.
#[derive(Clone, Debug)]
pub struct Var {
    pub name: String,
    pub dtype: MilDType,
    pub shape: Vec<usize>,
}

impl Var {
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

pub fn tensor_type(dtype: MilDType, shape: &[usize]) -> proto::ValueType {
    proto::ValueType {
        tensor_type: Some(proto::TensorType {
            data_type: dtype.code(),
            rank: shape.len() as i64,
            dimensions: shape
                .iter()
                .map(|&d| proto::Dimension {
                    constant: Some(proto::ConstantDimension { size: d as u64 }),
                })
                .collect(),
            attributes: HashMap::new(),
        }),
    }
}

fn immediate(dtype: MilDType, shape: &[usize], tv: proto::TensorValue) -> proto::Value {
    proto::Value {
        doc_string: String::new(),
        r#type: Some(tensor_type(dtype, shape)),
        immediate_value: Some(proto::ImmediateValue { tensor: Some(tv) }),
        blob_file_value: None,
    }
}

fn string_value(s: &str) -> proto::Value {
    immediate(
        MilDType::Str,
        &[],
        proto::TensorValue {
            strings: Some(proto::RepeatedStrings {
                values: vec![s.to_string()],
            }),
            ..Default::default()
        },
    )
}

/// Constant data handed to [`Graph::constant`].
pub enum ConstData<'a> {
    Floats(&'a [f32]),
    Ints(&'a [i32]),
    Bools(&'a [bool]),
    Str(&'a str),
}

/// Output shape of a broadcasting elementwise op (numpy rules).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let get = |s: &[usize], i: usize| {
        if i + s.len() < n {
            1
        } else {
            s[i + s.len() - n]
        }
    };
    (0..n)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(CoreMlError::Graph(format!(
                "shapes {a:?} and {b:?} do not broadcast"
            ))),
        })
        .collect()
}

/// A MIL function under construction, with its weight blob.
pub struct Graph {
    ops: Vec<proto::Operation>,
    blob: BlobWriter,
    counter: usize,
    /// The float type inside the graph (fp16 or fp32).
    pub compute: MilDType,
    inputs: Vec<Var>,
    outputs: Vec<Var>,
    blob_bytes: u64,
}

impl Graph {
    pub fn new(compute: MilDType, blob: BlobWriter) -> Self {
        Self {
            ops: Vec::new(),
            blob,
            counter: 0,
            compute,
            inputs: Vec::new(),
            outputs: Vec::new(),
            blob_bytes: 0,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Declares a function input.
    pub fn input(&mut self, name: &str, dtype: MilDType, shape: &[usize]) -> Var {
        let v = Var {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
        };
        self.inputs.push(v.clone());
        v
    }

    /// Marks `v` as a function output named `name` (renaming the op result that produced it).
    pub fn output(&mut self, v: &Var, name: &str) -> Result<Var> {
        let op = self
            .ops
            .iter_mut()
            .rev()
            .find(|op| op.outputs.first().is_some_and(|o| o.name == v.name))
            .ok_or_else(|| CoreMlError::Graph(format!("output `{}` has no producer", v.name)))?;
        op.outputs[0].name = name.to_string();
        let out = Var {
            name: name.to_string(),
            ..v.clone()
        };
        self.outputs.push(out.clone());
        Ok(out)
    }

    /// Bytes written to the weight blob so far (data only).
    pub fn blob_bytes(&self) -> u64 {
        self.blob_bytes
    }

    fn push_const(&mut self, dtype: MilDType, shape: &[usize], val: proto::Value) -> Var {
        let name = self.fresh("const");
        self.ops.push(proto::Operation {
            r#type: "const".into(),
            inputs: HashMap::new(),
            outputs: vec![proto::NamedValueType {
                name: name.clone(),
                r#type: Some(tensor_type(dtype, shape)),
            }],
            blocks: Vec::new(),
            attributes: HashMap::from([
                ("name".to_string(), string_value(&name)),
                ("val".to_string(), val),
            ]),
        });
        Var {
            name,
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// A constant. Float data is stored in `dtype` (F16 or F32); large float tensors go to the
    /// blob, everything else is inlined.
    pub fn constant(
        &mut self,
        data: ConstData<'_>,
        dtype: MilDType,
        shape: &[usize],
    ) -> Result<Var> {
        let numel: usize = shape.iter().product();
        let tv = match data {
            ConstData::Floats(v) => {
                if v.len() != numel {
                    return Err(CoreMlError::Graph(format!(
                        "constant of shape {shape:?} given {} values",
                        v.len()
                    )));
                }
                let bytes = match dtype {
                    MilDType::F16 => v
                        .iter()
                        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                        .collect::<Vec<u8>>(),
                    MilDType::F32 => Vec::new(),
                    other => {
                        return Err(CoreMlError::Graph(format!(
                            "float constant stored as {other:?}"
                        )))
                    }
                };
                if numel > INLINE_LIMIT {
                    let (bd, raw) = match dtype {
                        MilDType::F16 => (BlobDType::F16, bytes),
                        _ => (
                            BlobDType::F32,
                            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                        ),
                    };
                    let offset = self.blob.append(bd, &raw)?;
                    self.blob_bytes += raw.len() as u64;
                    let val = proto::Value {
                        doc_string: String::new(),
                        r#type: Some(tensor_type(dtype, shape)),
                        immediate_value: None,
                        blob_file_value: Some(proto::BlobFileValue {
                            file_name: WEIGHT_FILE.into(),
                            offset,
                        }),
                    };
                    return Ok(self.push_const(dtype, shape, val));
                }
                match dtype {
                    MilDType::F16 => proto::TensorValue {
                        bytes: Some(proto::RepeatedBytes { values: bytes }),
                        ..Default::default()
                    },
                    _ => proto::TensorValue {
                        floats: Some(proto::RepeatedFloats { values: v.to_vec() }),
                        ..Default::default()
                    },
                }
            }
            ConstData::Ints(v) => proto::TensorValue {
                ints: Some(proto::RepeatedInts { values: v.to_vec() }),
                ..Default::default()
            },
            ConstData::Bools(v) => proto::TensorValue {
                bools: Some(proto::RepeatedBools { values: v.to_vec() }),
                ..Default::default()
            },
            ConstData::Str(s) => proto::TensorValue {
                strings: Some(proto::RepeatedStrings {
                    values: vec![s.to_string()],
                }),
                ..Default::default()
            },
        };
        let val = immediate(dtype, shape, tv);
        Ok(self.push_const(dtype, shape, val))
    }

    /// A float tensor (from Candle, any float dtype) as a constant in the compute dtype.
    pub fn weight(&mut self, t: &Tensor) -> Result<Var> {
        let shape = t.dims().to_vec();
        let v = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.constant(ConstData::Floats(&v), self.compute, &shape)
    }

    /// A float scalar in the compute dtype.
    pub fn scalar(&mut self, x: f32) -> Result<Var> {
        self.constant(ConstData::Floats(&[x]), self.compute, &[])
    }

    pub fn ints(&mut self, v: &[i32]) -> Result<Var> {
        self.constant(ConstData::Ints(v), MilDType::I32, &[v.len()])
    }

    pub fn int(&mut self, v: i32) -> Result<Var> {
        self.constant(ConstData::Ints(&[v]), MilDType::I32, &[])
    }

    pub fn boolean(&mut self, v: bool) -> Result<Var> {
        self.constant(ConstData::Bools(&[v]), MilDType::Bool, &[])
    }

    pub fn string(&mut self, s: &str) -> Result<Var> {
        self.constant(ConstData::Str(s), MilDType::Str, &[])
    }

    /// Emits `ty` with named inputs; the single output has `dtype` and `shape`.
    pub fn op(
        &mut self,
        ty: &str,
        inputs: &[(&str, &Var)],
        dtype: MilDType,
        shape: Vec<usize>,
    ) -> Var {
        let name = self.fresh(ty);
        let inputs = inputs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    proto::Argument {
                        arguments: vec![proto::Binding {
                            name: Some(v.name.clone()),
                            value: None,
                        }],
                    },
                )
            })
            .collect();
        self.ops.push(proto::Operation {
            r#type: ty.into(),
            inputs,
            outputs: vec![proto::NamedValueType {
                name: name.clone(),
                r#type: Some(tensor_type(dtype, &shape)),
            }],
            blocks: Vec::new(),
            attributes: HashMap::from([("name".to_string(), string_value(&name))]),
        });
        Var { name, dtype, shape }
    }

    // ---- ops with shape inference ----

    fn binary(&mut self, ty: &str, x: &Var, y: &Var) -> Result<Var> {
        if x.dtype != y.dtype {
            return Err(CoreMlError::Graph(format!(
                "{ty}: dtypes {:?} and {:?} differ",
                x.dtype, y.dtype
            )));
        }
        let shape = broadcast_shape(&x.shape, &y.shape)?;
        Ok(self.op(ty, &[("x", x), ("y", y)], x.dtype, shape))
    }

    pub fn add(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("add", x, y)
    }

    pub fn sub(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("sub", x, y)
    }

    pub fn mul(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("mul", x, y)
    }

    pub fn real_div(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("real_div", x, y)
    }

    pub fn maximum(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("maximum", x, y)
    }

    fn unary(&mut self, ty: &str, x: &Var) -> Var {
        self.op(ty, &[("x", x)], x.dtype, x.shape.clone())
    }

    pub fn silu(&mut self, x: &Var) -> Var {
        self.unary("silu", x)
    }

    pub fn abs(&mut self, x: &Var) -> Var {
        self.unary("abs", x)
    }

    /// `1 / sqrt(x + epsilon)`.
    pub fn rsqrt(&mut self, x: &Var, epsilon: f32) -> Result<Var> {
        let e = self.constant(ConstData::Floats(&[epsilon]), x.dtype, &[])?;
        Ok(self.op(
            "rsqrt",
            &[("x", x), ("epsilon", &e)],
            x.dtype,
            x.shape.clone(),
        ))
    }

    pub fn cast(&mut self, x: &Var, dtype: MilDType) -> Result<Var> {
        let d = self.string(dtype.cast_name())?;
        Ok(self.op("cast", &[("x", x), ("dtype", &d)], dtype, x.shape.clone()))
    }

    /// `reduce_mean` / `reduce_max` over `axes`, keeping the reduced dims (size 1).
    pub fn reduce(&mut self, ty: &str, x: &Var, axes: &[usize]) -> Result<Var> {
        let mut shape = x.shape.clone();
        for &a in axes {
            if a >= shape.len() {
                return Err(CoreMlError::Graph(format!("{ty}: axis {a} of {shape:?}")));
            }
            shape[a] = 1;
        }
        let ax = self.ints(&axes.iter().map(|&a| a as i32).collect::<Vec<_>>())?;
        let keep = self.boolean(true)?;
        Ok(self.op(
            ty,
            &[("x", x), ("axes", &ax), ("keep_dims", &keep)],
            x.dtype,
            shape,
        ))
    }

    pub fn reshape(&mut self, x: &Var, shape: &[usize]) -> Result<Var> {
        if shape.iter().product::<usize>() != x.shape.iter().product::<usize>() {
            return Err(CoreMlError::Graph(format!(
                "reshape {:?} -> {shape:?} changes the element count",
                x.shape
            )));
        }
        if shape == x.shape.as_slice() {
            return Ok(x.clone());
        }
        let s = self.ints(&shape.iter().map(|&d| d as i32).collect::<Vec<_>>())?;
        Ok(self.op(
            "reshape",
            &[("x", x), ("shape", &s)],
            x.dtype,
            shape.to_vec(),
        ))
    }

    pub fn transpose(&mut self, x: &Var, perm: &[usize]) -> Result<Var> {
        if perm.len() != x.rank() {
            return Err(CoreMlError::Graph(format!(
                "transpose: perm {perm:?} for {:?}",
                x.shape
            )));
        }
        let shape = perm.iter().map(|&p| x.shape[p]).collect();
        let p = self.ints(&perm.iter().map(|&d| d as i32).collect::<Vec<_>>())?;
        Ok(self.op("transpose", &[("x", x), ("perm", &p)], x.dtype, shape))
    }

    pub fn concat(&mut self, xs: &[Var], axis: usize) -> Result<Var> {
        if xs.len() == 1 {
            return Ok(xs[0].clone());
        }
        let first = xs
            .first()
            .ok_or_else(|| CoreMlError::Graph("concat of nothing".into()))?;
        let mut shape = first.shape.clone();
        shape[axis] = 0;
        for x in xs {
            let mut a = x.shape.clone();
            let mut b = first.shape.clone();
            a[axis] = 0;
            b[axis] = 0;
            if a != b || x.dtype != first.dtype {
                return Err(CoreMlError::Graph(format!(
                    "concat of {:?} and {:?} on axis {axis}",
                    first.shape, x.shape
                )));
            }
            shape[axis] += x.shape[axis];
        }
        let name = self.fresh("concat");
        let ax = self.int(axis as i32)?;
        let inter = self.boolean(false)?;
        let values = proto::Argument {
            arguments: xs
                .iter()
                .map(|v| proto::Binding {
                    name: Some(v.name.clone()),
                    value: None,
                })
                .collect(),
        };
        let bind = |v: &Var| proto::Argument {
            arguments: vec![proto::Binding {
                name: Some(v.name.clone()),
                value: None,
            }],
        };
        self.ops.push(proto::Operation {
            r#type: "concat".into(),
            inputs: HashMap::from([
                ("values".to_string(), values),
                ("axis".to_string(), bind(&ax)),
                ("interleave".to_string(), bind(&inter)),
            ]),
            outputs: vec![proto::NamedValueType {
                name: name.clone(),
                r#type: Some(tensor_type(first.dtype, &shape)),
            }],
            blocks: Vec::new(),
            attributes: HashMap::from([("name".to_string(), string_value(&name))]),
        });
        Ok(Var {
            name,
            dtype: first.dtype,
            shape,
        })
    }

    /// `x[begin:end:stride]` along `axis` (other axes whole).
    pub fn slice(
        &mut self,
        x: &Var,
        axis: usize,
        begin: usize,
        end: usize,
        stride: usize,
    ) -> Result<Var> {
        let n = x.shape[axis];
        if begin >= end || end > n || stride == 0 {
            return Err(CoreMlError::Graph(format!(
                "slice {begin}..{end} step {stride} of axis {axis} in {:?}",
                x.shape
            )));
        }
        if begin == 0 && end == n && stride == 1 {
            return Ok(x.clone());
        }
        let r = x.rank();
        let mut b = vec![0i32; r];
        let mut e: Vec<i32> = x.shape.iter().map(|&d| d as i32).collect();
        let mut s = vec![1i32; r];
        b[axis] = begin as i32;
        e[axis] = end as i32;
        s[axis] = stride as i32;
        let mut shape = x.shape.clone();
        shape[axis] = (end - begin).div_ceil(stride);
        let (bv, ev, sv) = (self.ints(&b)?, self.ints(&e)?, self.ints(&s)?);
        Ok(self.op(
            "slice_by_index",
            &[("x", x), ("begin", &bv), ("end", &ev), ("stride", &sv)],
            x.dtype,
            shape,
        ))
    }

    /// `pad` with `pads` = (before, after) for each of the last `pads.len()` axes.
    pub fn pad(&mut self, x: &Var, pads: &[(usize, usize)], mode: &str) -> Result<Var> {
        if pads.iter().all(|&(a, b)| a == 0 && b == 0) {
            return Ok(x.clone());
        }
        let r = x.rank();
        let mut shape = x.shape.clone();
        let mut flat = Vec::new();
        for (i, &(a, b)) in pads.iter().enumerate() {
            shape[r - pads.len() + i] += a + b;
            flat.extend([a as i32, b as i32]);
        }
        let p = self.ints(&flat)?;
        let m = self.string(mode)?;
        let c = self.constant(ConstData::Floats(&[0.0]), x.dtype, &[])?;
        Ok(self.op(
            "pad",
            &[("x", x), ("pad", &p), ("mode", &m), ("constant_val", &c)],
            x.dtype,
            shape,
        ))
    }

    /// 2-D convolution of `[N, C, H, W]` with `weight` `[Cout, C, kh, kw]`; `pad` is
    /// `[top, bottom, left, right]` zeros.
    pub fn conv(
        &mut self,
        x: &Var,
        weight: &Var,
        bias: Option<&Var>,
        stride: usize,
        pad: [usize; 4],
    ) -> Result<Var> {
        let (n, c, h, w) = match x.shape.as_slice() {
            &[n, c, h, w] => (n, c, h, w),
            s => {
                return Err(CoreMlError::Graph(format!(
                    "conv input {s:?} is not rank 4"
                )))
            }
        };
        let (co, ci, kh, kw) = match weight.shape.as_slice() {
            &[a, b, c, d] => (a, b, c, d),
            s => {
                return Err(CoreMlError::Graph(format!(
                    "conv weight {s:?} is not rank 4"
                )))
            }
        };
        let (hp, wp) = (h + pad[0] + pad[1], w + pad[2] + pad[3]);
        if ci != c || hp < kh || wp < kw {
            return Err(CoreMlError::Graph(format!(
                "conv of {:?} with weight {:?}",
                x.shape, weight.shape
            )));
        }
        let shape = vec![n, co, (hp - kh) / stride + 1, (wp - kw) / stride + 1];
        let strides = self.ints(&[stride as i32; 2])?;
        let pad_type = self.string("custom")?;
        let pads = self.ints(&pad.map(|p| p as i32))?;
        let dil = self.ints(&[1, 1])?;
        let groups = self.int(1)?;
        let mut inputs = vec![
            ("x", x),
            ("weight", weight),
            ("strides", &strides),
            ("pad_type", &pad_type),
            ("pad", &pads),
            ("dilations", &dil),
            ("groups", &groups),
        ];
        if let Some(b) = bias {
            inputs.push(("bias", b));
        }
        Ok(self.op("conv", &inputs, x.dtype, shape))
    }

    /// Finishes the blob and returns the `Program` (function `main`) and its I/O.
    pub fn finish(self, opset: &str) -> Result<(proto::Program, Vec<Var>, Vec<Var>, u64)> {
        let total = self.blob.finish()?;
        let nvt = |v: &Var| proto::NamedValueType {
            name: v.name.clone(),
            r#type: Some(tensor_type(v.dtype, &v.shape)),
        };
        let block = proto::Block {
            inputs: Vec::new(),
            outputs: self.outputs.iter().map(|v| v.name.clone()).collect(),
            operations: self.ops,
            attributes: HashMap::new(),
        };
        let function = proto::Function {
            inputs: self.inputs.iter().map(nvt).collect(),
            opset: opset.to_string(),
            block_specializations: HashMap::from([(opset.to_string(), block)]),
            attributes: HashMap::new(),
        };
        let program = proto::Program {
            version: 1,
            functions: HashMap::from([("main".to_string(), function)]),
            doc_string: String::new(),
            attributes: HashMap::new(),
        };
        Ok((program, self.inputs, self.outputs, total))
    }
}
