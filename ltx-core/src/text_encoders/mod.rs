//! Port of `ltx_core/text_encoders/`: the Gemma-3 text path (feature extractors, embeddings
//! connectors and the embeddings processor so far).

pub mod gemma;
