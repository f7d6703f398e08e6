// @tandem/test-support: synthetic ONNX models built in-process and the real models shipped in npm
// packages, for tests and benchmarks. Node only.

export {
  DEFAULT_OPSET,
  ONNX_DTYPE_CODES,
  ONNX_IR_VERSION,
  PRODUCER_NAME,
  buildModel,
  buildModelWithExternalData,
} from './onnx-builder.js';
export type {
  AttributeValue,
  Initializer,
  ModelSpec,
  NodeSpec,
  OnnxDataByDtype,
  OnnxDtype,
  TensorValue,
  ValueInfo,
} from './onnx-builder.js';
export { createPrng, fillUniform } from './prng.js';
export type { Prng } from './prng.js';
export {
  HEAVY_MODEL_COLUMNS,
  buildHeavyModel,
  buildMlpClassifier,
  buildTileModel,
  buildTinyModel,
} from './synthetic-models.js';
export type {
  HeavyModel,
  HeavyModelOptions,
  MlpClassifier,
  MlpClassifierOptions,
  TinyModel,
} from './synthetic-models.js';
export { MODEL_FILE_NAME, writeModelFile } from './model-repository.js';
export {
  PADDLEOCR_DICTIONARY,
  REAL_MODELS,
  REAL_MODEL_NAMES,
  paddleOcrDictionaryPath,
  realAssetPath,
  realModelPath,
} from './real-models.js';
export type { RealAsset, RealModel, RealModelName, RealModelPackage } from './real-models.js';
export {
  DEFAULT_WAIT_MS,
  TestClient,
  connectClient,
  openRawSocket,
  refusedUpgrade,
  toStreamUrl,
} from './ws-test-client.js';
export type {
  CloseInfo,
  ConnectOptions,
  JobLog,
  RawSocketOptions,
  RawSocketResult,
} from './ws-test-client.js';
export { SLOW_WIDTH, buildMatMulChainModel, slowInput, writeSlowModel } from './slow-model.js';
export { errorCode, rejectionCode } from './error-code.js';
export { chromiumPath, launchChromium } from './chromium.js';
export type { LaunchOptions } from './chromium.js';
export {
  BROWSER_PAGE_ROOT,
  DEMO_CONFIG,
  buildBrowserPage,
  buildDemo,
  type BrowserPageOptions,
} from './browser-page.js';
export { CLI_PATH, startCli, startWorkerCli } from './cli-process.js';
export { REDIS_SERVER_PATH, freePort, startRedis } from './redis-server.js';
export type { RedisOptions, RedisProcess } from './redis-server.js';
export type { CliProcess } from './cli-process.js';
