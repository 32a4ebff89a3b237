//! `guider` fixtures (see `docs/parity.md`).

use std::sync::Arc;

use candle_core::Device;
use ltx_core::loader::StateDict;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let _ = (inputs, device);
    Err(fx.bad("component not implemented yet"))
}
