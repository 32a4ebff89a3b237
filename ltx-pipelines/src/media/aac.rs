//! AAC-LC stereo with the Fraunhofer FDK encoder, as ADTS frames (what muxide takes); compiled with
//! the cargo feature `fdk-aac` only. Stands for the AAC stream of `ltx_pipelines/utils/media_io.py`
//! (`_prepare_audio_stream` / `_write_audio`, ffmpeg's native AAC encoder there).

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::AAC_FRAME_LEN;

pub(super) struct AacStream {
    encoder: Encoder,
    /// Encoder delay (priming samples per channel) that an MP4 edit list hides.
    pub delay: usize,
    /// Samples per channel fed so far.
    pub samples: usize,
    pub frames: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl AacStream {
    pub fn new(sample_rate: u32) -> Result<Self, String> {
        // ffmpeg's native AAC encoder defaults to 128 kb/s for stereo; lower rates cap lower
        let bit_rate = if sample_rate >= 32000 {
            128_000
        } else {
            96_000
        };
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bit_rate),
            sample_rate,
            transport: Transport::Adts,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| format!("cannot create the AAC encoder at {sample_rate} Hz ({e})"))?;
        let info = encoder
            .info()
            .map_err(|e| format!("AAC encoder info ({e})"))?;
        if info.frameLength as usize != AAC_FRAME_LEN {
            return Err(format!("unexpected AAC frame length {}", info.frameLength));
        }
        Ok(Self {
            encoder,
            delay: info.nDelay as usize,
            samples: 0,
            frames: Vec::new(),
            out: vec![0u8; (info.maxOutBufBytes as usize).max(8192)],
        })
    }

    /// Encodes interleaved stereo i16 samples.
    pub fn feed(&mut self, interleaved: &[i16]) -> Result<(), String> {
        self.push(interleaved)?;
        self.samples += interleaved.len() / 2;
        Ok(())
    }

    fn push(&mut self, interleaved: &[i16]) -> Result<(), String> {
        let mut pos = 0;
        while pos < interleaved.len() {
            let info = self
                .encoder
                .encode(&interleaved[pos..], &mut self.out)
                .map_err(|e| format!("AAC encoding failed ({e})"))?;
            if info.output_size > 0 {
                self.frames.push(self.out[..info.output_size].to_vec());
            }
            if info.input_consumed == 0 && info.output_size == 0 {
                return Err("the AAC encoder stopped taking input".into());
            }
            pos += info.input_consumed;
        }
        Ok(())
    }

    /// Pushes silence until every fed sample (plus the encoder delay) is in a frame, then
    /// keeps exactly those frames.
    pub fn flush(&mut self) -> Result<(), String> {
        let needed = (self.samples + self.delay).div_ceil(AAC_FRAME_LEN);
        let silence = vec![0i16; AAC_FRAME_LEN * 2];
        // a few frames beyond what the delay calls for, in case the encoder buffers more
        let mut budget = needed + 8;
        while self.frames.len() < needed {
            if budget == 0 {
                return Err("the AAC encoder did not flush".into());
            }
            budget -= 1;
            self.push(&silence)?;
        }
        self.frames.truncate(needed);
        Ok(())
    }
}
