// Turns what the person picked (a sample's URL, a chosen or dropped file) into RGBA pixels for the
// OCR pipeline, plus an object URL to show. Very large photos are scaled down first: the detector
// works at 960 px anyway and recognition crops gain nothing past this size.

import { TandemError } from '@tandem/shared';
import type { RgbaImage } from '../ocr/index.js';

/** Longest side kept from an input image, in pixels. */
export const MAX_IMAGE_SIDE = 2048;

/** A decoded image: its pixels and a URL that shows the same pixels. */
export interface LoadedImage {
  readonly rgba: RgbaImage;
  /** An object URL for an <img>; revoke it when the image is replaced. */
  readonly url: string;
  readonly name: string;
}

/** Decodes an image file or blob. Throws `E_INVALID_ARGUMENT` when it is not a readable image. */
export async function loadImage(blob: Blob, name: string): Promise<LoadedImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch (error) {
    throw new TandemError('E_INVALID_ARGUMENT', `${name} is not an image this browser can read`, {
      cause: error,
    });
  }
  const scale = Math.min(1, MAX_IMAGE_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  if (context === null) throw new TandemError('E_NO_BACKEND', 'this browser has no 2D canvas');
  // Transparent pixels (PNG cut-outs) read as white paper, not black.
  context.fillStyle = '#fff';
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const pixels = context.getImageData(0, 0, width, height);
  const shown = scale === 1 ? blob : await canvasBlob(canvas);
  return {
    rgba: { width, height, data: pixels.data },
    url: URL.createObjectURL(shown),
    name,
  };
}

/** Fetches and decodes an image by URL (the shipped samples). */
export async function loadImageUrl(url: string, name: string): Promise<LoadedImage> {
  const response = await fetch(url);
  if (!response.ok)
    throw new TandemError('E_DOWNLOAD', `could not fetch ${url}: HTTP ${response.status}`);
  return loadImage(await response.blob(), name);
}

function canvasBlob(canvas: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => {
      if (blob === null) reject(new Error('could not encode the scaled image'));
      else resolve(blob);
    }, 'image/png');
  });
}
