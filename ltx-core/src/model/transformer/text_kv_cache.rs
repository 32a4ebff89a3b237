//! Text cross-attention keys and values kept across denoising steps.
//!
//! Where the text cross-attention's context does not depend on the step (LTX-2 19B, which has no
//! cross-attention AdaLN, and checkpoints with `use_prompt_adaln_single: false`; not LTX-2.3 nor the
//! released LTX-2.5, whose prompt modulation follows sigma), its K/V projections are the
//! same at every step of a stage. An attention layer with a [`TextKvCache`] computes them once per
//! [`ContextKey`] and reuses them: the same operations on the same inputs, so the outputs are
//! bit-identical to recomputing them.

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor, TensorId};

/// Identity of a text context across steps: the ids of the tensors it was made from, in batch
/// order (one per guidance pass when the passes run as one batch). Tensor ids are never reused,
/// so a key can only match the very tensors it was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContextKey(Vec<TensorId>);

impl ContextKey {
    /// The key of one context tensor.
    pub fn of(context: &Tensor) -> Self {
        Self(vec![context.id()])
    }

    /// The key of the batch concatenation of contexts with these keys.
    pub fn concat<'a>(keys: impl IntoIterator<Item = &'a ContextKey>) -> Self {
        Self(keys.into_iter().flat_map(|k| k.0.iter().copied()).collect())
    }
}

/// Contexts remembered per layer: a guided step uses at most a positive and a negative prompt,
/// batched or not, so four slots hold every context of a stage; the oldest goes first.
const SLOTS: usize = 4;

/// The (normed keys, values) of the last few contexts of one attention layer. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct TextKvCache(Arc<Mutex<Vec<(ContextKey, Tensor, Tensor)>>>);

impl TextKvCache {
    /// The cached pair for `key`, else `compute()`'s, remembered.
    pub fn get_or_insert(
        &self,
        key: &ContextKey,
        compute: impl FnOnce() -> Result<(Tensor, Tensor)>,
    ) -> Result<(Tensor, Tensor)> {
        {
            let slots = self.0.lock().expect("text K/V cache lock");
            if let Some((_, k, v)) = slots.iter().find(|(stored, _, _)| stored == key) {
                return Ok((k.clone(), v.clone()));
            }
        }
        let (k, v) = compute()?;
        let mut slots = self.0.lock().expect("text K/V cache lock");
        if slots.len() >= SLOTS {
            slots.remove(0);
        }
        slots.push((key.clone(), k.clone(), v.clone()));
        Ok((k, v))
    }

    /// How many contexts are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().expect("text K/V cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every context (frees their keys and values).
    pub fn clear(&self) {
        self.0.lock().expect("text K/V cache lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn computes_once_per_context_and_forgets_the_oldest() -> Result<()> {
        let dev = Device::Cpu;
        let cache = TextKvCache::default();
        let contexts: Vec<Tensor> = (0..5)
            .map(|i| Tensor::full(i as f32, (1, 2), &dev))
            .collect::<Result<_>>()?;
        let mut computed = 0;
        let mut get = |c: &Tensor| {
            cache.get_or_insert(&ContextKey::of(c), || {
                computed += 1;
                Ok((c.clone(), (c + 1.0)?))
            })
        };
        let (k, v) = get(&contexts[0])?;
        let (k2, _) = get(&contexts[0])?;
        assert_eq!(k.to_vec2::<f32>()?, k2.to_vec2::<f32>()?);
        assert_eq!(v.to_vec2::<f32>()?, vec![vec![1.0, 1.0]]);
        // a clone is the same tensor; a copy with the same values is another context
        get(&contexts[0].clone())?;
        get(&contexts[0].copy()?)?;
        for c in &contexts[1..] {
            get(c)?;
        }
        get(&contexts[0])?;
        // 0, its copy, 1..4: six computations, then 0 again (evicted by 3 and 4)
        assert_eq!(computed, 7);
        assert_eq!(cache.len(), SLOTS);
        let both =
            ContextKey::concat([&ContextKey::of(&contexts[1]), &ContextKey::of(&contexts[2])]);
        assert_ne!(both, ContextKey::of(&contexts[1]));
        cache.clear();
        assert!(cache.is_empty());
        Ok(())
    }
}
