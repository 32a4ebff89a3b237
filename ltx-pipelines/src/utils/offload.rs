//! Where a large component's weights live while it runs, and how many of its blocks a memory
//! budget lets stay resident.
//!
//! The budget counts weights only (in the compute dtype, plus the stored copy `cpu` keeps);
//! activations come on top and are not planned here.

use ltx_core::quantization::Quantization;

use crate::{Error, Result};

/// `--offload`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offload {
    /// Every weight resident in the compute dtype on the device.
    #[default]
    None,
    /// Blocks beyond the budget are kept in host memory in their stored dtype and built on the
    /// device one block ahead of use.
    Cpu,
    /// Blocks beyond the budget are read from the memory-mapped checkpoint one block ahead of use.
    Disk,
}

/// The offload mode, the budget (`--max-memory`, bytes) for the large components, and how the
/// transformer's block linears are narrowed at load (`--quantization`; fp8 and GGUF files stay
/// narrow whatever it says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryPolicy {
    pub offload: Offload,
    pub max_memory: Option<u64>,
    pub quantization: Quantization,
}

/// What one component's weights take, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentSize {
    /// Everything outside the blocks, in the compute dtype.
    pub resident: u64,
    /// Each block in the compute dtype.
    pub blocks: Vec<u64>,
    /// Each block in its stored dtype (what `Offload::Cpu` keeps in host memory).
    pub blocks_stored: Vec<u64>,
}

/// How a component is held: `None` for all resident, else how many leading blocks stay.
pub type Plan = Option<usize>;

const MB: u64 = 1 << 20;

impl MemoryPolicy {
    /// How many of `size`'s blocks stay resident, or a typed error when even streaming every
    /// block cannot fit the budget. `available` is the device's free memory, the budget when
    /// none was given (`None`: unknown, so a streamed component keeps no block resident).
    pub fn plan(
        &self,
        component: &'static str,
        size: &ComponentSize,
        available: Option<u64>,
    ) -> Result<Plan> {
        let total: u64 = size.resident + size.blocks.iter().sum::<u64>();
        let over = |needed: u64, budget: u64, hint| Error::MemoryBudget {
            component,
            needed_mb: needed.div_ceil(MB),
            budget_mb: budget / MB,
            hint,
        };
        if self.offload == Offload::None {
            return match self.max_memory {
                Some(budget) if total > budget => Err(over(
                    total,
                    budget,
                    "stream its blocks with `--offload disk` (or `cpu`), or raise `--max-memory`",
                )),
                _ => Ok(None),
            };
        }
        let Some(budget) = self.max_memory.or(available) else {
            return Ok(Some(0));
        };
        let stored: u64 = match self.offload {
            Offload::Cpu => size.blocks_stored.iter().sum(),
            _ => 0,
        };
        // the block in use, built, and the next one's stored tensors being read
        let largest = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        let in_flight = largest(&size.blocks) + largest(&size.blocks_stored);
        let floor = size.resident + stored + in_flight;
        if floor > budget {
            let hint = match self.offload {
                Offload::Cpu => {
                    "`--offload disk` keeps no stored copy in memory; or raise `--max-memory`"
                }
                _ => "raise `--max-memory`, or use a smaller compute dtype (`--dtype bf16`)",
            };
            return Err(over(floor, budget, hint));
        }
        let mut left = budget - floor;
        let mut resident = 0;
        for &b in &size.blocks {
            if b > left {
                break;
            }
            left -= b;
            resident += 1;
        }
        Ok(Some(resident))
    }
}

/// Free memory of the host (`MemAvailable`), where the system reports it.
pub fn host_available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size() -> ComponentSize {
        ComponentSize {
            resident: 10 * MB,
            blocks: vec![4 * MB; 5],
            blocks_stored: vec![2 * MB; 5],
        }
    }

    fn policy(offload: Offload, mb: Option<u64>) -> MemoryPolicy {
        MemoryPolicy {
            quantization: Quantization::None,
            offload,
            max_memory: mb.map(|m| m * MB),
        }
    }

    #[test]
    fn budgets_give_resident_blocks_or_typed_errors() {
        let s = size();
        // resident: 30 MB in all
        assert_eq!(
            policy(Offload::None, None).plan("t", &s, None).unwrap(),
            None
        );
        assert_eq!(
            policy(Offload::None, Some(30)).plan("t", &s, None).unwrap(),
            None
        );
        let err = policy(Offload::None, Some(29))
            .plan("t", &s, None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MemoryBudget {
                    needed_mb: 30,
                    budget_mb: 29,
                    ..
                }
            ),
            "{err}"
        );
        // disk: 10 + 4 + 2 in flight = 16 MB floor, then 4 MB per resident block
        let plan = |offload, mb| policy(offload, Some(mb)).plan("t", &s, None);
        assert_eq!(plan(Offload::Disk, 16).unwrap(), Some(0));
        assert_eq!(plan(Offload::Disk, 25).unwrap(), Some(2));
        assert_eq!(plan(Offload::Disk, 100).unwrap(), Some(5));
        assert!(plan(Offload::Disk, 15).is_err());
        // cpu keeps the stored copy (10 MB) too
        assert_eq!(plan(Offload::Cpu, 26).unwrap(), Some(0));
        assert!(plan(Offload::Cpu, 25).is_err());
        // no budget given: the device's free memory, or stream everything when unknown
        let free = policy(Offload::Disk, None).plan("t", &s, Some(20 * MB));
        assert_eq!(free.unwrap(), Some(1));
        assert_eq!(
            policy(Offload::Disk, None).plan("t", &s, None).unwrap(),
            Some(0)
        );
    }
}
