//! Progress bars of the generation commands: one per stage, steps with it/s and ETA.

use indicatif::{ProgressBar, ProgressStyle};
use ltx_pipelines::utils::types::ProgressEvent;

/// The bar of the running stage.
#[derive(Default)]
pub struct Bars {
    current: Option<ProgressBar>,
}

impl Bars {
    pub fn event(&mut self, e: ProgressEvent) {
        match e {
            ProgressEvent::Stage { name, total } => {
                self.finish();
                let bar = if total > 0 {
                    let b = ProgressBar::new(total as u64);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{msg:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta} ({elapsed})",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b
                } else {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template("{msg:>18} {spinner} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.enable_steady_tick(std::time::Duration::from_millis(200));
                    b
                };
                bar.set_message(name);
                self.current = Some(bar);
            }
            ProgressEvent::Step { done, .. } => {
                if let Some(b) = &self.current {
                    b.set_position(done as u64);
                }
            }
            ProgressEvent::EnhancedPrompt(text) => {
                let line = format!("enhanced prompt: {text}");
                match &self.current {
                    Some(b) => b.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.current.take() {
            b.finish();
        }
    }
}
