//! A [`VarBuilder`] that builds a model without weights: it records every requested name and
//! shape and hands back zero-stride (unallocated) tensors, so a full-size model's structure can be
//! checked against the reference's parameter manifest on any machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// The names and shapes a model asked for, in name order.
#[derive(Clone, Default)]
pub struct ShapeRecord(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl ShapeRecord {
    /// Takes the recorded `name -> shape` map.
    pub fn take(&self) -> BTreeMap<String, Vec<usize>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct ShapeOnlyBackend(ShapeRecord);

impl SimpleBackend for ShapeOnlyBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), s.dims().to_vec());
        // one element broadcast to the shape: no allocation of the full size
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape-only builder: `{name}` was requested without a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// A var builder that records shapes instead of loading weights, and its record.
pub fn shape_only_var_builder(dtype: DType, device: &Device) -> (VarBuilder<'static>, ShapeRecord) {
    let record = ShapeRecord::default();
    let vb = VarBuilder::from_backend(
        Box::new(ShapeOnlyBackend(record.clone())),
        dtype,
        device.clone(),
    );
    (vb, record)
}
