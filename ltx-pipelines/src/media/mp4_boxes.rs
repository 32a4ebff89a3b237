//! Just enough ISO-BMFF box surgery to fix up muxide's AAC track:
//! - muxide times audio on a 90 kHz clock; readers that take the media timescale for the sample
//!   rate (symphonia among them) then misjudge the length, so the track is retimed in place to
//!   its sample rate (`mdhd` timescale and duration, `stts` deltas of 1024);
//! - muxide writes no edit list: one is inserted into the sound track (`edts/elst`) to skip the
//!   encoder's priming samples, the parent sizes grow and, since the `moov` precedes the `mdat`
//!   (fast start), every chunk offset shifts by the growth.
//!
//! The reference has no counterpart: ffmpeg's MP4 muxer (behind `encode_video` in
//! `ltx_pipelines/utils/media_io.py`) writes these boxes itself.

type R<T> = std::result::Result<T, String>;

#[derive(Clone, Copy, Debug)]
struct BoxAt {
    start: usize,
    size: usize,
    header: usize,
    kind: [u8; 4],
}

fn be32(buf: &[u8], at: usize) -> R<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "truncated box".to_string())
}

/// The boxes laid end to end in `buf[start..end]`.
fn children(buf: &[u8], start: usize, end: usize) -> R<Vec<BoxAt>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos + 8 <= end {
        let size32 = be32(buf, pos)? as usize;
        let kind = [buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]];
        let (size, header) = match size32 {
            0 => (end - pos, 8),
            1 => {
                let hi = be32(buf, pos + 8)? as u64;
                let lo = be32(buf, pos + 12)? as u64;
                (((hi << 32) | lo) as usize, 16)
            }
            n => (n, 8),
        };
        if size < header || pos + size > end {
            return Err(format!(
                "box {:?} overruns its parent",
                String::from_utf8_lossy(&kind)
            ));
        }
        out.push(BoxAt {
            start: pos,
            size,
            header,
            kind,
        });
        pos += size;
    }
    Ok(out)
}

fn inner(buf: &[u8], parent: BoxAt) -> R<Vec<BoxAt>> {
    children(
        buf,
        parent.start + parent.header,
        parent.start + parent.size,
    )
}

fn find(list: &[BoxAt], kind: &[u8; 4]) -> Option<BoxAt> {
    list.iter().copied().find(|b| &b.kind == kind)
}

fn path(buf: &[u8], from: BoxAt, kinds: &[&[u8; 4]]) -> R<Option<BoxAt>> {
    let mut cur = from;
    for kind in kinds {
        match find(&inner(buf, cur)?, kind) {
            Some(b) => cur = b,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// `timescale` of an `mvhd` / `mdhd` full box (versions 0 and 1).
fn timescale(buf: &[u8], b: BoxAt) -> R<u32> {
    let body = b.start + b.header;
    let at = if buf.get(body) == Some(&1) {
        body + 20
    } else {
        body + 12
    };
    be32(buf, at)
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Retimes the sound track to `rate` and adds an edit list that starts `delay` samples into the
/// media and lasts `samples` samples, so players skip the encoder's priming samples and the
/// trailing padding. `frames` is the number of 1024-sample AAC frames in the track.
pub(super) fn fix_audio_track(
    mut mp4: Vec<u8>,
    frames: usize,
    delay: usize,
    samples: usize,
    rate: u32,
) -> R<Vec<u8>> {
    let top = children(&mp4, 0, mp4.len())?;
    let moov = find(&top, b"moov").ok_or("no moov box")?;
    let mdat = find(&top, b"mdat").ok_or("no mdat box")?;
    if moov.header != 8 {
        return Err("64-bit moov size".into());
    }
    let movie_scale = {
        let mvhd = find(&inner(&mp4, moov)?, b"mvhd").ok_or("no mvhd box")?;
        timescale(&mp4, mvhd)?
    };
    let mut sound = None;
    for trak in inner(&mp4, moov)?
        .into_iter()
        .filter(|b| &b.kind == b"trak")
    {
        let Some(hdlr) = path(&mp4, trak, &[b"mdia", b"hdlr"])? else {
            continue;
        };
        // full-box header (4) + pre_defined (4), then the handler type
        let at = hdlr.start + hdlr.header + 8;
        if mp4.get(at..at + 4) == Some(b"soun".as_slice()) {
            sound = Some(trak);
            break;
        }
    }
    let trak = sound.ok_or("no sound track")?;
    let trak_children = inner(&mp4, trak)?;
    if find(&trak_children, b"edts").is_some() || trak.header != 8 {
        return Ok(mp4);
    }
    let tkhd = find(&trak_children, b"tkhd").ok_or("no tkhd box")?;

    // retime: media timescale = sample rate, every AAC frame lasts 1024 ticks
    let mdhd = path(&mp4, trak, &[b"mdia", b"mdhd"])?.ok_or("no mdhd box")?;
    let body = mdhd.start + mdhd.header;
    let total = (frames * super::AAC_FRAME_LEN) as u64;
    if mp4.get(body) == Some(&1) {
        put32(&mut mp4, body + 20, rate);
        mp4[body + 24..body + 32].copy_from_slice(&total.to_be_bytes());
    } else {
        put32(&mut mp4, body + 12, rate);
        put32(
            &mut mp4,
            body + 16,
            u32::try_from(total).map_err(|_| "audio too long")?,
        );
    }
    let stts = path(&mp4, trak, &[b"mdia", b"minf", b"stbl", b"stts"])?.ok_or("no stts box")?;
    let body = stts.start + stts.header;
    let entries = be32(&mp4, body + 4)? as usize;
    let mut counted = 0usize;
    for i in 0..entries {
        let at = body + 8 + 8 * i;
        counted += be32(&mp4, at)? as usize;
        put32(&mut mp4, at + 4, super::AAC_FRAME_LEN as u32);
    }
    if counted != frames {
        return Err(format!(
            "the audio track has {counted} samples, expected {frames}"
        ));
    }

    let segment = (samples as f64 / f64::from(rate) * f64::from(movie_scale)).round();
    if segment > f64::from(u32::MAX) || delay > i32::MAX as usize {
        return Err("edit list values overflow 32 bits".into());
    }
    let media_time = delay as f64;
    let mut edts = Vec::with_capacity(36);
    edts.extend_from_slice(&36u32.to_be_bytes());
    edts.extend_from_slice(b"edts");
    edts.extend_from_slice(&28u32.to_be_bytes());
    edts.extend_from_slice(b"elst");
    edts.extend_from_slice(&0u32.to_be_bytes()); // version 0, no flags
    edts.extend_from_slice(&1u32.to_be_bytes()); // one entry
    edts.extend_from_slice(&(segment as u32).to_be_bytes());
    edts.extend_from_slice(&(media_time as u32).to_be_bytes());
    edts.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    let grow = edts.len();

    // the media data moves down by `grow` when the moov sits before it
    if moov.start < mdat.start {
        for t in inner(&mp4, moov)?
            .into_iter()
            .filter(|b| &b.kind == b"trak")
        {
            let Some(stbl) = path(&mp4, t, &[b"mdia", b"minf", b"stbl"])? else {
                continue;
            };
            for table in inner(&mp4, stbl)? {
                let body = table.start + table.header;
                let count = be32(&mp4, body + 4)? as usize;
                match &table.kind {
                    b"stco" => {
                        for i in 0..count {
                            let at = body + 8 + 4 * i;
                            let v = u64::from(be32(&mp4, at)?) + grow as u64;
                            let v = u32::try_from(v).map_err(|_| "chunk offset overflow")?;
                            mp4[at..at + 4].copy_from_slice(&v.to_be_bytes());
                        }
                    }
                    b"co64" => {
                        for i in 0..count {
                            let at = body + 8 + 8 * i;
                            let hi = u64::from(be32(&mp4, at)?);
                            let lo = u64::from(be32(&mp4, at + 4)?);
                            let v = ((hi << 32) | lo) + grow as u64;
                            mp4[at..at + 8].copy_from_slice(&v.to_be_bytes());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for parent in [moov, trak] {
        let size = u32::try_from(parent.size + grow).map_err(|_| "box size overflow")?;
        mp4[parent.start..parent.start + 4].copy_from_slice(&size.to_be_bytes());
    }
    let at = tkhd.start + tkhd.size;
    mp4.splice(at..at, edts);
    Ok(mp4)
}
