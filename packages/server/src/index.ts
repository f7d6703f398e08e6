// @tandem/server: the self-hosted inference server. Use createServer() in code or the `tandem` CLI.

export { SERVER_NAME, SERVER_VERSION, createServer } from './create-server.js';
export type { ServerOptions, TandemServer } from './create-server.js';
export { ApiKeys, hashApiKey, loadApiKeyFile, parseApiKeyFile } from './api-keys.js';
export type { ApiKeyRecord } from './api-keys.js';
export { parseModelConfig, DEFAULT_MODEL_CONFIG } from './model-config.js';
export type { ModelConfig } from './model-config.js';
export type { ModelEntry } from './model-repository.js';
export { defaultCatalog } from './default-catalog.js';
export { readOnnxMetadata } from './onnx-metadata.js';
export type { OnnxMetadata } from './onnx-metadata.js';
export { KEY_SUBPROTOCOL_PREFIX, STREAM_PATH, SUBPROTOCOL } from './ws-gateway.js';
export type { SessionSettings } from './onnx-session.js';
export type { UsageRow, UsageSource } from './usage.js';
