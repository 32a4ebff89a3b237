//! Compiling, loading and running a Core ML model through `objc2-core-ml`.

use std::cell::Cell;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use block2::StackBlock;
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::ProtocolObject;
use objc2::AnyThread;
use objc2_core_ml::{
    MLComputeUnits, MLDictionaryFeatureProvider, MLFeatureProvider, MLFeatureValue, MLModel,
    MLModelConfiguration, MLMultiArray, MLMultiArrayDataType,
};
use objc2_foundation::{NSArray, NSDictionary, NSError, NSInteger, NSNumber, NSString, NSURL};

use super::cache;
use super::layout::{self, LayoutError, ScalarType};
use super::{ComputeUnits, RunnerError};

impl From<ComputeUnits> for MLComputeUnits {
    fn from(units: ComputeUnits) -> Self {
        match units {
            ComputeUnits::CpuOnly => MLComputeUnits::CPUOnly,
            ComputeUnits::CpuAndGpu => MLComputeUnits::CPUAndGPU,
            ComputeUnits::CpuAndNeuralEngine => MLComputeUnits::CPUAndNeuralEngine,
            ComputeUnits::All => MLComputeUnits::All,
        }
    }
}

/// Wall times of [`CoreMlModel::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTimes {
    /// Hashing the package to find its cache entry.
    pub hash: Duration,
    /// Compiling to `.mlmodelc` and installing it in the cache; zero on a cache hit.
    pub compile: Duration,
    /// `MLModel` load (includes Core ML's own device-specific preparation, e.g. for the ANE).
    pub load: Duration,
    /// Whether the compiled model came from the cache.
    pub cache_hit: bool,
}

/// Outcome of locating or producing the compiled model.
struct Compiled {
    path: PathBuf,
    hash: Duration,
    compile: Duration,
    cache_hit: bool,
}

/// `localizedDescription (domain code)` of an `NSError`.
fn describe(error: &NSError) -> String {
    format!(
        "{} ({} {})",
        error.localizedDescription(),
        error.domain(),
        error.code()
    )
}

fn ns_string(path: &Path) -> Result<Retained<NSString>, RunnerError> {
    path.to_str()
        .map(NSString::from_str)
        .ok_or_else(|| RunnerError::NonUtf8Path(path.to_path_buf()))
}

fn file_url(path: &Path) -> Result<Retained<NSURL>, RunnerError> {
    Ok(NSURL::fileURLWithPath(&*ns_string(path)?))
}

/// Sorted names of a set or array of `NSString`s, for error messages.
fn sorted_names(names: impl IntoIterator<Item = Retained<NSString>>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

/// Reads an `NSArray<NSNumber>` of dimensions or strides.
fn dims(array: &NSArray<NSNumber>, what: &'static str) -> Result<Vec<usize>, LayoutError> {
    let values: Vec<isize> = array.iter().map(|n| n.as_isize()).collect();
    layout::to_usize_dims(&values, what)
}

fn scalar_type(name: &str, data_type: MLMultiArrayDataType) -> Result<ScalarType, RunnerError> {
    match data_type {
        MLMultiArrayDataType::Float16 => Ok(ScalarType::F16),
        MLMultiArrayDataType::Float32 => Ok(ScalarType::F32),
        MLMultiArrayDataType::Float64 => Ok(ScalarType::F64),
        other => Err(RunnerError::UnsupportedDataType {
            name: name.to_string(),
            code: other.0,
        }),
    }
}

fn data_type(scalar: ScalarType) -> MLMultiArrayDataType {
    match scalar {
        ScalarType::F16 => MLMultiArrayDataType::Float16,
        ScalarType::F32 => MLMultiArrayDataType::Float32,
        ScalarType::F64 => MLMultiArrayDataType::Float64,
    }
}

/// Byte length reported by a buffer handler, as `usize`.
fn byte_len(size: NSInteger) -> Result<usize, LayoutError> {
    usize::try_from(size).map_err(|_| LayoutError::Negative {
        what: "buffer size",
        value: size,
    })
}

/// Compiles `package` with Core ML into a temporary `.mlmodelc` and returns its path.
fn compile(package: &Path) -> Result<PathBuf, RunnerError> {
    let url = file_url(package)?;
    // SAFETY: `url` is a valid file URL; the call is synchronous and reports failure through the
    // returned `NSError`. (The completion-handler variant would only add a thread hop here.)
    #[allow(deprecated)]
    let compiled =
        unsafe { MLModel::compileModelAtURL_error(&url) }.map_err(|e| RunnerError::Compile {
            package: package.to_path_buf(),
            message: describe(&e),
        })?;
    let path = compiled.path().ok_or_else(|| RunnerError::Compile {
        package: package.to_path_buf(),
        message: "compiled model URL has no file path".to_string(),
    })?;
    Ok(PathBuf::from(path.to_string()))
}

fn locate_or_compile(package: &Path, cache_dir: &Path) -> Result<Compiled, RunnerError> {
    let start = Instant::now();
    let key = cache::package_hash(package)?;
    let hash = start.elapsed();
    let cached = cache::cached_model_path(cache_dir, &key);
    if cached.is_dir() {
        return Ok(Compiled {
            path: cached,
            hash,
            compile: Duration::ZERO,
            cache_hit: true,
        });
    }
    let start = Instant::now();
    let temporary = autoreleasepool(|_| compile(package))?;
    let path = cache::install_compiled(&temporary, cache_dir, &key)?;
    Ok(Compiled {
        path,
        hash,
        compile: start.elapsed(),
        cache_hit: false,
    })
}

/// Path of the compiled `.mlmodelc` for `package` inside `cache_dir`, compiling it on first use.
///
/// The cache key is a SHA-256 of the package's files (see [`package_hash`](super::package_hash));
/// a new entry is installed atomically, so concurrent processes at worst compile twice.
pub fn compiled_model_path(package: &Path, cache_dir: &Path) -> Result<PathBuf, RunnerError> {
    Ok(locate_or_compile(package, cache_dir)?.path)
}

/// A loaded Core ML model. Not `Send`: use it on the thread that loaded it.
#[derive(Debug)]
pub struct CoreMlModel {
    model: Retained<MLModel>,
    compiled_path: PathBuf,
    units: ComputeUnits,
}

impl CoreMlModel {
    /// Compiles (or fetches from `cache_dir`) and loads `package` for the given compute units.
    pub fn load(
        package: &Path,
        units: ComputeUnits,
        cache_dir: &Path,
    ) -> Result<(CoreMlModel, LoadTimes), RunnerError> {
        let compiled = locate_or_compile(package, cache_dir)?;
        let start = Instant::now();
        let model = autoreleasepool(|_| Self::load_compiled(&compiled.path, units))?;
        let times = LoadTimes {
            hash: compiled.hash,
            compile: compiled.compile,
            load: start.elapsed(),
            cache_hit: compiled.cache_hit,
        };
        Ok((model, times))
    }

    /// Loads an already compiled `.mlmodelc` directory.
    pub fn load_compiled(compiled: &Path, units: ComputeUnits) -> Result<CoreMlModel, RunnerError> {
        let url = file_url(compiled)?;
        // SAFETY: plain allocation and property setter on a fresh configuration object.
        let config = unsafe {
            let config = MLModelConfiguration::new();
            config.setComputeUnits(units.into());
            config
        };
        // SAFETY: `url` and `config` are valid objects; failure (missing files, a corrupt weight
        // blob, an unsupported op) is reported through the returned `NSError`.
        let model = unsafe { MLModel::modelWithContentsOfURL_configuration_error(&url, &config) }
            .map_err(|e| RunnerError::Load {
            path: compiled.to_path_buf(),
            message: describe(&e),
        })?;
        Ok(CoreMlModel {
            model,
            compiled_path: compiled.to_path_buf(),
            units,
        })
    }

    /// The cached `.mlmodelc` this model was loaded from.
    pub fn compiled_path(&self) -> &Path {
        &self.compiled_path
    }

    /// The compute units the model was configured with.
    pub fn compute_units(&self) -> ComputeUnits {
        self.units
    }

    /// Sorted names of the model's inputs.
    pub fn input_names(&self) -> Vec<String> {
        // SAFETY: read-only property getters on a loaded model.
        let keys = unsafe {
            self.model
                .modelDescription()
                .inputDescriptionsByName()
                .allKeys()
        };
        sorted_names(keys.iter())
    }

    /// Sorted names of the model's outputs.
    pub fn output_names(&self) -> Vec<String> {
        // SAFETY: read-only property getters on a loaded model.
        let keys = unsafe {
            self.model
                .modelDescription()
                .outputDescriptionsByName()
                .allKeys()
        };
        sorted_names(keys.iter())
    }

    /// Runs the model on one multi-array input and returns one multi-array output.
    ///
    /// `input` is dense row-major with dimensions `shape`; it is converted to the element type the
    /// model declares for `input_name` (Float32, Float16 or Float64). The output is returned as
    /// dense row-major `f32` together with its shape, whatever its element type and strides.
    pub fn predict(
        &self,
        input_name: &str,
        input: &[f32],
        shape: &[usize],
        output_name: &str,
    ) -> Result<(Vec<f32>, Vec<usize>), RunnerError> {
        let expected = layout::element_count(shape)?;
        if expected != input.len() {
            return Err(RunnerError::ShapeMismatch {
                shape: shape.to_vec(),
                expected,
                got: input.len(),
            });
        }
        // Core ML autoreleases temporaries per prediction; drain them here so that repeated calls
        // from a thread without a run loop do not accumulate output buffers.
        autoreleasepool(|_| self.predict_in_pool(input_name, input, shape, output_name))
    }

    fn predict_in_pool(
        &self,
        input_name: &str,
        input: &[f32],
        shape: &[usize],
        output_name: &str,
    ) -> Result<(Vec<f32>, Vec<usize>), RunnerError> {
        let scalar = self.input_scalar_type(input_name)?;
        let array = new_multi_array(shape, scalar)?;
        fill_multi_array(&array, input, shape, scalar)?;
        let provider = feature_provider(input_name, &array)?;
        // SAFETY: `provider` is a valid feature provider; errors come back as `NSError`.
        let outputs = unsafe {
            self.model
                .predictionFromFeatures_error(ProtocolObject::from_ref(&*provider))
        }
        .map_err(|e| RunnerError::Predict {
            message: describe(&e),
        })?;
        // SAFETY: `outputs` is the provider Core ML just returned; lookups are read-only.
        let value = unsafe { outputs.featureValueForName(&NSString::from_str(output_name)) }
            .ok_or_else(|| RunnerError::MissingOutput {
                name: output_name.to_string(),
                // SAFETY: as above.
                available: sorted_names(unsafe { outputs.featureNames() }.iter()),
            })?;
        // SAFETY: read-only accessor; `None` when the feature is not a multi-array.
        let output =
            unsafe { value.multiArrayValue() }.ok_or_else(|| RunnerError::NotMultiArray {
                name: output_name.to_string(),
            })?;
        read_multi_array(&output, output_name)
    }

    /// Element type the model declares for `name`.
    fn input_scalar_type(&self, name: &str) -> Result<ScalarType, RunnerError> {
        // SAFETY: read-only property getters on a loaded model.
        let inputs = unsafe { self.model.modelDescription().inputDescriptionsByName() };
        let description = inputs
            .objectForKey(&NSString::from_str(name))
            .ok_or_else(|| RunnerError::MissingInput {
                name: name.to_string(),
                available: sorted_names(inputs.allKeys().iter()),
            })?;
        // SAFETY: read-only getters; `None` when the input is not a multi-array.
        let constraint = unsafe { description.multiArrayConstraint() }.ok_or_else(|| {
            RunnerError::NotMultiArray {
                name: name.to_string(),
            }
        })?;
        // SAFETY: read-only getter.
        scalar_type(name, unsafe { constraint.dataType() })
    }
}

/// A new, uninitialised multi-array of `shape` and `scalar` elements.
fn new_multi_array(
    shape: &[usize],
    scalar: ScalarType,
) -> Result<Retained<MLMultiArray>, RunnerError> {
    let numbers: Vec<Retained<NSNumber>> = shape.iter().map(|&d| NSNumber::new_usize(d)).collect();
    let ns_shape = NSArray::from_retained_slice(&numbers);
    // SAFETY: `alloc` gives a fresh object that the initialiser consumes; a bad shape is reported
    // through the returned `NSError`.
    unsafe {
        MLMultiArray::initWithShape_dataType_error(
            MLMultiArray::alloc(),
            &ns_shape,
            data_type(scalar),
        )
    }
    .map_err(|e| RunnerError::Predict {
        message: format!(
            "cannot allocate input array of shape {shape:?}: {}",
            describe(&e)
        ),
    })
}

/// Copies dense row-major `values` into `array`, honouring the strides Core ML hands the writer.
fn fill_multi_array(
    array: &MLMultiArray,
    values: &[f32],
    shape: &[usize],
    scalar: ScalarType,
) -> Result<(), RunnerError> {
    let outcome: Cell<Option<Result<(), LayoutError>>> = Cell::new(None);
    let handler = StackBlock::new(
        |bytes: NonNull<c_void>, size: NSInteger, strides: NonNull<NSArray<NSNumber>>| {
            // SAFETY: Core ML passes a live strides array for the duration of this call.
            let strides = unsafe { strides.as_ref() };
            let result = dims(strides, "stride").and_then(|strides| {
                let len = byte_len(size)?;
                // SAFETY: Core ML guarantees `bytes` points to `size` writable bytes, exclusively
                // ours until the handler returns; `u8` has no alignment requirement.
                let buffer =
                    unsafe { std::slice::from_raw_parts_mut(bytes.as_ptr().cast::<u8>(), len) };
                layout::scatter_from_f32(values, scalar, shape, &strides, buffer)
            });
            outcome.set(Some(result));
        },
    );
    // SAFETY: the handler only touches the buffer within its documented lifetime and cannot
    // unwind (all failures are stored in `outcome`). The call runs the handler synchronously.
    unsafe { array.getMutableBytesWithHandler(&handler) };
    match outcome.into_inner() {
        Some(result) => Ok(result?),
        None => Err(RunnerError::Predict {
            message: "Core ML did not expose the input buffer".to_string(),
        }),
    }
}

/// `MLDictionaryFeatureProvider` holding `array` under `name`.
fn feature_provider(
    name: &str,
    array: &MLMultiArray,
) -> Result<Retained<MLDictionaryFeatureProvider>, RunnerError> {
    // SAFETY: wraps a valid multi-array in a feature value.
    let value: Retained<MLFeatureValue> =
        unsafe { MLFeatureValue::featureValueWithMultiArray(array) };
    let key = NSString::from_str(name);
    let object = Retained::into_super(Retained::into_super(value));
    let dictionary = NSDictionary::from_slices(&[&*key], &[&*object]);
    // SAFETY: the dictionary maps `NSString` keys to `MLFeatureValue`s as the initialiser
    // requires; other problems are reported through the returned `NSError`.
    unsafe {
        MLDictionaryFeatureProvider::initWithDictionary_error(
            MLDictionaryFeatureProvider::alloc(),
            &dictionary,
        )
    }
    .map_err(|e| RunnerError::Predict {
        message: format!("cannot build input features: {}", describe(&e)),
    })
}

/// Dense row-major `f32` copy of `array` and its shape.
fn read_multi_array(
    array: &MLMultiArray,
    name: &str,
) -> Result<(Vec<f32>, Vec<usize>), RunnerError> {
    // SAFETY: read-only property getters on a valid multi-array.
    let (shape, strides, data_type) = unsafe { (array.shape(), array.strides(), array.dataType()) };
    let scalar = scalar_type(name, data_type)?;
    let shape = dims(&shape, "dimension")?;
    let strides = dims(&strides, "stride")?;
    let outcome: Cell<Option<Result<Vec<f32>, LayoutError>>> = Cell::new(None);
    let handler = StackBlock::new(|bytes: NonNull<c_void>, size: NSInteger| {
        let result = byte_len(size).and_then(|len| {
            // SAFETY: Core ML guarantees `bytes` points to `size` readable bytes that stay valid
            // and unmodified until the handler returns; `u8` has no alignment requirement.
            let buffer = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), len) };
            layout::gather_to_f32(buffer, scalar, &shape, &strides)
        });
        outcome.set(Some(result));
    });
    // SAFETY: the handler reads the buffer only within its documented lifetime and cannot unwind
    // (all failures are stored in `outcome`). The call runs the handler synchronously, and also
    // takes care of locking pixel-buffer (IOSurface) backed outputs.
    unsafe { array.getBytesWithHandler(&handler) };
    match outcome.into_inner() {
        Some(result) => Ok((result?, shape)),
        None => Err(RunnerError::Predict {
            message: format!("Core ML did not expose the buffer of output `{name}`"),
        }),
    }
}
