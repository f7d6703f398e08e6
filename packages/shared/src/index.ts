// @tandem/shared: the contract between client and server. No runtime dependencies, no DOM, no Node.

export { ERROR_CODES, isErrorCode } from './error-codes.js';
export type { ErrorCode, ErrorCodeInfo } from './error-codes.js';
export { TandemError, isTandemError } from './tandem-error.js';
export type { SerializedError, TandemErrorOptions } from './tandem-error.js';
export {
  TENSOR_DTYPES,
  bytesPerElement,
  createTensor,
  elementCount,
  isTensorDtype,
  viewTensorData,
} from './tensor.js';
export type {
  NumericTensorDtype,
  Tensor,
  TensorDataByDtype,
  TensorDtype,
  TensorMap,
} from './tensor.js';
export {
  CLIENT_MESSAGE_TYPES,
  DEFAULT_PRIORITY,
  MAX_LIST_ITEMS,
  MODEL_STATES,
  PRIORITY_MAX,
  PRIORITY_MIN,
  PROTOCOL_VERSION,
  SERVER_MESSAGE_TYPES,
  isClientMessage,
  isServerMessage,
} from './messages.js';
export type {
  CancelMessage,
  ClientMessage,
  ErrorMessage,
  HelloMessage,
  InferMessage,
  JobTimings,
  Message,
  ModelEstimates,
  ModelMessage,
  ModelState,
  ModelStatus,
  PingMessage,
  PongMessage,
  ProgressMessage,
  ResultMessage,
  ResumeMessage,
  ServerLimits,
  ServerMessage,
  WarmMessage,
  WelcomeMessage,
} from './messages.js';
export {
  FRAME_PREFIX_BYTES,
  MAX_HEADER_BYTES,
  decodeClientMessage,
  decodeMessage,
  decodeServerMessage,
  peekInferId,
  encodeMessage,
  encodeMessageParts,
  ZERO_COPY_MIN_BYTES,
} from './frame-codec.js';
export type { DecodeOptions, EncodeOptions, PartsOptions } from './frame-codec.js';
export { POOLED_FRAME_MAX_BYTES } from './frame-pool.js';
export {
  DEFAULT_LOCAL_PLAN,
  DEFAULT_REMOTE_PLAN,
  FINAL_STAGES,
  LOCAL_STAGES,
  MAX_NAME_CHARS,
  MAX_UNFINISHED_FRACTION,
  PROGRESS_STAGES,
  REMOTE_STAGES,
  createProgressTracker,
  parseProgressEvent,
} from './progress.js';
export type {
  PlannedStage,
  ProgressEvent,
  ProgressStage,
  ProgressTracker,
  ProgressTrackerOptions,
  StageUpdate,
  Where,
} from './progress.js';
export {
  BACKENDS,
  LOCAL_BACKENDS,
  MAX_TENSOR_RANK,
  PLACEMENTS,
  isBackend,
  parseModelManifest,
  parsePlacementHints,
  parseTensorSpecs,
} from './manifest.js';
export type {
  Backend,
  DimSpec,
  ExternalDataFile,
  LocalBackend,
  ModelManifest,
  Placement,
  PlacementHints,
  TensorSpec,
} from './manifest.js';
export {
  at,
  expectArray,
  expectBoolean,
  expectInteger,
  expectNumber,
  expectOneOf,
  expectRecord,
  expectString,
  optional,
} from './assert.js';
export type { ParseContext } from './assert.js';
export { fromFloat16Bits, toFloat16Bits } from './float16.js';
export { MovingAverage } from './moving-average.js';
export { compareVersions } from './model-version.js';
export {
  DTYPE_TO_OIP,
  OIP_DATATYPES,
  OIP_HEADER_LENGTH_HEADER,
  OIP_TO_DTYPE,
  isOipDatatype,
} from './oip-datatypes.js';
export type { OipDatatype } from './oip-datatypes.js';
