//! `duration_head` fixtures (`docs/parity-duration-head.md`): `call.op` = `head` (the LTX-2.5
//! duration head built from the fixture's `duration_head.*` weights through the checkpoint key ops,
//! `call.forwards` / `call.predict`) or `frames` (`seconds_to_clamped_num_frames` row by row).
//!
//! Read strictly: an unknown `call` key, a stored tensor nothing reads, or a weight the head does
//! not ask for is a fixture error.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::StateDict;
use ltx_core::model::duration_head::{
    duration_head_key_ops, DurationHead, DurationHeadConfig, DURATION_HEAD_PREFIX,
};
use ltx_pipelines::utils::duration::{
    seconds_to_clamped_num_frames, AutoDuration, DurationPredictor,
};
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    // every tensor of the file is a head weight, an input or an output
    if let Some(k) = fx.files().keys().into_iter().find(|k| {
        !k.starts_with(DURATION_HEAD_PREFIX)
            && !k.starts_with("input.")
            && !k.starts_with("output.")
    }) {
        return Err(fx.bad(format!("unexpected tensor `{k}`")));
    }
    let reader = Inputs {
        fx,
        sd: inputs,
        device,
        used: RefCell::new(BTreeSet::new()),
    };
    let out = match fx.call_str("op")? {
        "head" => {
            fx.call_only(&["op", "forwards", "predict"])?;
            head(&reader)?
        }
        "frames" => {
            fx.call_only(&["op"])?;
            frames(&reader)?
        }
        other => return Err(fx.bad(format!("unknown duration_head op `{other}`"))),
    };
    let used = reader.used.borrow();
    let unread: Vec<String> = inputs
        .keys()
        .into_iter()
        .filter(|k| !used.contains(k))
        .collect();
    if !unread.is_empty() {
        return Err(fx.bad(format!("inputs no call reads: {unread:?}")));
    }
    Ok(out)
}

/// The stored inputs, recording which ones were read.
struct Inputs<'a> {
    fx: &'a Fixture,
    sd: &'a Arc<StateDict>,
    device: &'a Device,
    used: RefCell<BTreeSet<String>>,
}

impl Inputs<'_> {
    /// A float input widened to f32.
    fn tokens(&self, name: &str) -> Result<Tensor> {
        self.used.borrow_mut().insert(name.to_string());
        self.fx.input(self.sd, name, self.device)
    }

    /// A 1-d (or `rank`-d) input of exactly `dtype`, as stored.
    fn exact(&self, name: &str, dtype: DType, rank: usize) -> Result<Tensor> {
        if !self.sd.contains(name) {
            return Err(self.fx.bad(format!("missing tensor `input.{name}`")));
        }
        self.used.borrow_mut().insert(name.to_string());
        let t = self.sd.raw_tensor(name, &Device::Cpu)?;
        if t.dtype() != dtype || t.rank() != rank {
            return Err(self.fx.bad(format!(
                "`input.{name}` must be a {rank}-d {dtype:?} tensor, got {:?} {:?}",
                t.dtype(),
                t.dims()
            )));
        }
        Ok(t)
    }

    /// `value` (a JSON string or null) as an optional input tensor.
    fn optional(&self, value: &Value, what: &str) -> Result<Option<Tensor>> {
        match value {
            Value::Null => Ok(None),
            Value::String(name) => Ok(Some(self.tokens(name)?)),
            other => Err(self
                .fx
                .bad(format!("{what} must be an input name or null, got {other}"))),
        }
    }
}

fn head(inp: &Inputs) -> Result<Outputs> {
    let fx = inp.fx;
    let cfg = DurationHeadConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&duration_head_key_ops())?;
    let head = DurationHead::new(&cfg, sd.var_builder(DType::F32, inp.device))?;
    let unused = sd.unused_keys();
    if !unused.is_empty() {
        return Err(fx.bad(format!("weights the head does not use: {unused:?}")));
    }
    let predictor = DurationPredictor::new(head);
    let mut out = Outputs::new();
    let forwards = fx
        .call_value("forwards")
        .and_then(Value::as_object)
        .ok_or_else(|| fx.bad("call.forwards must be an object"))?;
    for (name, pair) in forwards {
        let what = format!("call.forwards.{name}");
        let [v, a] = pair
            .as_array()
            .map(Vec::as_slice)
            .and_then(|p| <&[Value; 2]>::try_from(p).ok())
            .ok_or_else(|| fx.bad(format!("{what} must be [video, audio]")))?;
        let v = inp.optional(v, &format!("{what}[0]"))?;
        let a = inp.optional(a, &format!("{what}[1]"))?;
        let seconds = predictor.head().forward(v.as_ref(), a.as_ref())?;
        out.push((name.clone(), seconds));
    }
    if let Some(p) = fx.call_value("predict") {
        fx.check_keys(p, "call.predict", &["output", "video", "audio", "args"])?;
        let field = |k: &str| -> Result<&Value> {
            p.get(k)
                .ok_or_else(|| fx.bad(format!("call.predict.{k} is missing")))
        };
        let name = field("output")?
            .as_str()
            .ok_or_else(|| fx.bad("call.predict.output must be a string"))?;
        let v = inp.optional(field("video")?, "call.predict.video")?;
        let a = inp.optional(field("audio")?, "call.predict.audio")?;
        let args_name = field("args")?
            .as_str()
            .ok_or_else(|| fx.bad("call.predict.args must be a string"))?;
        let args = inp.exact(args_name, DType::F64, 2)?;
        if args.dim(1)? != 3 {
            return Err(fx.bad(format!(
                "`input.{args_name}` must be [N, 3] (frame_rate, min_seconds, max_seconds)"
            )));
        }
        let mut frames = Vec::new();
        for row in args.to_vec2::<f64>()? {
            let window = AutoDuration {
                min_seconds: row[1],
                max_seconds: row[2],
            };
            frames.push(predictor.predict(v.as_ref(), a.as_ref(), row[0], window)? as i64);
        }
        let n = frames.len();
        out.push((name.to_string(), Tensor::from_vec(frames, n, inp.device)?));
    }
    Ok(out)
}

fn frames(inp: &Inputs) -> Result<Outputs> {
    let seconds = inp.exact("seconds", DType::F64, 1)?.to_vec1::<f64>()?;
    let rates = inp.exact("frame_rate", DType::F64, 1)?.to_vec1::<f64>()?;
    let lo = inp.exact("min_frames", DType::I64, 1)?.to_vec1::<i64>()?;
    let hi = inp.exact("max_frames", DType::I64, 1)?.to_vec1::<i64>()?;
    let n = seconds.len();
    if rates.len() != n || lo.len() != n || hi.len() != n {
        return Err(inp
            .fx
            .bad("seconds, frame_rate, min_frames and max_frames must have one length"));
    }
    let frames = (0..n)
        .map(|i| seconds_to_clamped_num_frames(seconds[i], rates[i], lo[i], hi[i]))
        .collect::<std::result::Result<Vec<i64>, _>>()?;
    Ok(vec![(
        "num_frames".into(),
        Tensor::from_vec(frames, n, inp.device)?,
    )])
}
