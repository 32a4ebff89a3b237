//! Where a model's repeated blocks (the transformer's blocks, Gemma's decoder layers) live during a
//! forward: all resident, or some resident and the rest streamed — each streamed block read from
//! the checkpoint by a background thread while the block before it computes, built on the device,
//! used once and freed.
//!
//! Streaming changes where the weights come from, never their values: a streamed block is built
//! by the same code from the same stored tensors as a resident one, so the forward is identical
//! bit for bit.

use std::sync::Arc;

use crate::loader::StateDict;

/// Reads block `i`'s stored tensors into memory (runs on the prefetch thread: no device work).
pub type StageBlock = dyn Fn(usize) -> crate::Result<StateDict> + Send + Sync;
/// Builds block `i` on the device from its staged tensors (runs on the calling thread).
pub type BuildBlock<B> = dyn Fn(usize, StateDict) -> crate::Result<B> + Send + Sync;

/// How the streamed blocks are read and built.
pub struct BlockStreamer<B> {
    pub stage: Arc<StageBlock>,
    pub build: Arc<BuildBlock<B>>,
}

impl<B> Clone for BlockStreamer<B> {
    fn clone(&self) -> Self {
        Self {
            stage: self.stage.clone(),
            build: self.build.clone(),
        }
    }
}

/// A model's blocks, in order.
#[derive(Clone)]
pub struct BlockStore<B> {
    /// `Some` for a resident block, `None` for a streamed one.
    blocks: Vec<Option<B>>,
    streamer: Option<BlockStreamer<B>>,
}

impl<B> std::fmt::Debug for BlockStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore")
            .field("blocks", &self.blocks.len())
            .field("resident", &self.resident_count())
            .finish()
    }
}

/// A block the forward is using: borrowed from the store or freshly built.
enum InUse<'a, B> {
    Resident(&'a B),
    Streamed(Box<B>),
}

impl<B> InUse<'_, B> {
    fn block(&self) -> &B {
        match self {
            Self::Resident(b) => b,
            Self::Streamed(b) => b,
        }
    }
}

impl<B> BlockStore<B> {
    /// Every block resident.
    pub fn resident(blocks: Vec<B>) -> Self {
        Self {
            blocks: blocks.into_iter().map(Some).collect(),
            streamer: None,
        }
    }

    /// `count` blocks of which the first `resident` are built now and kept; the others are
    /// streamed on every forward.
    pub fn streamed(
        count: usize,
        resident: usize,
        streamer: BlockStreamer<B>,
    ) -> crate::Result<Self> {
        let blocks = (0..count)
            .map(|i| {
                if i < resident {
                    let staged = (streamer.stage)(i)?;
                    (streamer.build)(i, staged).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Self {
            blocks,
            streamer: Some(streamer),
        })
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks kept resident, in order.
    pub fn resident_blocks(&self) -> impl Iterator<Item = &B> {
        self.blocks.iter().flatten()
    }

    pub fn resident_count(&self) -> usize {
        self.blocks.iter().filter(|b| b.is_some()).count()
    }

    /// Runs `f` on every block in order (with its index). A streamed block is staged on a
    /// background thread while the previous block runs, so at most two streamed blocks exist at
    /// once (the one in use and the next one's stored tensors).
    pub fn for_each(&self, mut f: impl FnMut(usize, &B) -> crate::Result<()>) -> crate::Result<()> {
        let Some(streamer) = &self.streamer else {
            for (i, block) in self.blocks.iter().flatten().enumerate() {
                f(i, block)?;
            }
            return Ok(());
        };
        std::thread::scope(|scope| {
            let stage = |i: usize| {
                let stage = streamer.stage.clone();
                scope.spawn(move || stage(i))
            };
            let streamed = |i: usize| self.blocks.get(i).is_some_and(Option::is_none);
            let mut next = streamed(0).then(|| stage(0));
            for (i, slot) in self.blocks.iter().enumerate() {
                let in_use = match slot {
                    Some(block) => InUse::Resident(block),
                    None => {
                        let staged = next
                            .take()
                            .expect("a streamed block is staged before its turn")
                            .join()
                            .map_err(|_| {
                                crate::Error::InvalidInput(format!(
                                    "the thread reading block {i} panicked"
                                ))
                            })??;
                        InUse::Streamed(Box::new((streamer.build)(i, staged)?))
                    }
                };
                // stage the next streamed block while this one computes
                if next.is_none() {
                    if let Some(j) = (i + 1..self.blocks.len()).find(|&j| streamed(j)) {
                        next = Some(stage(j));
                    }
                }
                f(i, in_use.block())?;
            }
            Ok(())
        })
    }
}
