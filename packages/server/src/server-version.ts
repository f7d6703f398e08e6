// The server's name and version (sent in `welcome`, printed by the CLI), in a module of its own so
// the CLI can print them without loading the whole server.

import { readFileSync } from 'node:fs';

/** The server's own name, sent in `welcome`. */
export const SERVER_NAME = '@tandem/server';

/** The package version, sent in `welcome`. */
export const SERVER_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;
