//! The subset of Core ML's protobuf schema (`Model.proto`, `FeatureTypes.proto`, `MIL.proto`,
//! package `CoreML.Specification`) that an ML Program needs, as hand-written prost messages.
//!
//! Field numbers follow Apple's BSD-3-Clause schema (coremltools 9.0). A subset of a proto3
//! schema is wire-compatible: fields left out here are simply absent from what we write, and
//! skipped when we read a file written by someone else. `oneof` members are modelled as plain
//! optional fields with the oneof's tag numbers.

use std::collections::HashMap;

/// `CoreML.Specification.Model` (only the ML Program variant).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Model {
    #[prost(int32, tag = "1")]
    pub specification_version: i32,
    #[prost(message, optional, tag = "2")]
    pub description: Option<ModelDescription>,
    #[prost(message, optional, tag = "502")]
    pub ml_program: Option<Program>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelDescription {
    #[prost(message, repeated, tag = "1")]
    pub input: Vec<FeatureDescription>,
    #[prost(message, repeated, tag = "10")]
    pub output: Vec<FeatureDescription>,
    #[prost(message, optional, tag = "100")]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(string, tag = "1")]
    pub short_description: String,
    #[prost(string, tag = "2")]
    pub version_string: String,
    #[prost(string, tag = "3")]
    pub author: String,
    #[prost(string, tag = "4")]
    pub license: String,
    #[prost(map = "string, string", tag = "100")]
    pub user_defined: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureDescription {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub short_description: String,
    #[prost(message, optional, tag = "3")]
    pub r#type: Option<FeatureType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureType {
    #[prost(message, optional, tag = "5")]
    pub multi_array_type: Option<ArrayFeatureType>,
    #[prost(bool, tag = "1000")]
    pub is_optional: bool,
}

/// `ArrayFeatureType.ArrayDataType` values.
pub mod array_data_type {
    pub const FLOAT32: i32 = 65568;
    pub const FLOAT16: i32 = 65552;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayFeatureType {
    #[prost(int64, repeated, tag = "1")]
    pub shape: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
}

// ---- MIL.proto ----

/// `MILSpec.DataType` values used here.
pub mod data_type {
    pub const BOOL: i32 = 1;
    pub const STRING: i32 = 2;
    pub const FLOAT16: i32 = 10;
    pub const FLOAT32: i32 = 11;
    pub const INT32: i32 = 23;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Program {
    #[prost(int64, tag = "1")]
    pub version: i64,
    #[prost(map = "string, message", tag = "2")]
    pub functions: HashMap<String, Function>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
    #[prost(map = "string, message", tag = "4")]
    pub attributes: HashMap<String, Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<NamedValueType>,
    #[prost(string, tag = "2")]
    pub opset: String,
    #[prost(map = "string, message", tag = "3")]
    pub block_specializations: HashMap<String, Block>,
    #[prost(map = "string, message", tag = "4")]
    pub attributes: HashMap<String, Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<NamedValueType>,
    #[prost(string, repeated, tag = "2")]
    pub outputs: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub operations: Vec<Operation>,
    #[prost(map = "string, message", tag = "4")]
    pub attributes: HashMap<String, Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(map = "string, message", tag = "2")]
    pub inputs: HashMap<String, Argument>,
    #[prost(message, repeated, tag = "3")]
    pub outputs: Vec<NamedValueType>,
    #[prost(message, repeated, tag = "4")]
    pub blocks: Vec<Block>,
    #[prost(map = "string, message", tag = "5")]
    pub attributes: HashMap<String, Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedValueType {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<ValueType>,
}

/// `ValueType` (only the tensor member of its oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorType {
    #[prost(int32, tag = "1")]
    pub data_type: i32,
    #[prost(int64, tag = "2")]
    pub rank: i64,
    #[prost(message, repeated, tag = "3")]
    pub dimensions: Vec<Dimension>,
    #[prost(map = "string, message", tag = "4")]
    pub attributes: HashMap<String, Value>,
}

/// `Dimension` (only constant sizes: every exported shape is fixed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    #[prost(message, optional, tag = "1")]
    pub constant: Option<ConstantDimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConstantDimension {
    #[prost(uint64, tag = "1")]
    pub size: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Argument {
    #[prost(message, repeated, tag = "1")]
    pub arguments: Vec<Binding>,
}

/// `Argument.Binding`: a value name (tag 1) or an inline value (tag 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Binding {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub doc_string: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<ValueType>,
    #[prost(message, optional, tag = "3")]
    pub immediate_value: Option<ImmediateValue>,
    #[prost(message, optional, tag = "5")]
    pub blob_file_value: Option<BlobFileValue>,
}

/// `Value.ImmediateValue` (only the tensor member of its oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImmediateValue {
    #[prost(message, optional, tag = "1")]
    pub tensor: Option<TensorValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobFileValue {
    #[prost(string, tag = "1")]
    pub file_name: String,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
}

/// `TensorValue`: one of its repeated members is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorValue {
    #[prost(message, optional, tag = "1")]
    pub floats: Option<RepeatedFloats>,
    #[prost(message, optional, tag = "2")]
    pub ints: Option<RepeatedInts>,
    #[prost(message, optional, tag = "3")]
    pub bools: Option<RepeatedBools>,
    #[prost(message, optional, tag = "4")]
    pub strings: Option<RepeatedStrings>,
    #[prost(message, optional, tag = "7")]
    pub bytes: Option<RepeatedBytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RepeatedFloats {
    #[prost(float, repeated, tag = "1")]
    pub values: Vec<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RepeatedInts {
    #[prost(int32, repeated, tag = "1")]
    pub values: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RepeatedBools {
    #[prost(bool, repeated, tag = "1")]
    pub values: Vec<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RepeatedStrings {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RepeatedBytes {
    #[prost(bytes = "vec", tag = "1")]
    pub values: Vec<u8>,
}
