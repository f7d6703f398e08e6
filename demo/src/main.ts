// The demo page: OCR on a picked or dropped image, with text detection on this device and
// recognition on the Tandem server that serves the page. It wakes the server model on load, shows
// a <tandem-progress> per job and a panel of where each step ran. `window.tandem` is the page's
// client, for trying things from the console.
//
// URL switches (for trying things out, and for the end-to-end tests):
//   ?allowSoftwareGpu  count a software WebGPU adapter (SwiftShader) as a GPU
//   ?placement=local|server|auto  preselect the placement switch

import { createTandem, type Tandem } from '@tandem/client';
import '@tandem/client/progress';
import type { TandemProgressElement } from '@tandem/client/progress';
import { TandemError } from '@tandem/shared';
import { DICTIONARY_FILE, loadDictionary, type OcrDictionary, type OcrLine } from './ocr/index.js';
import { loadImage, loadImageUrl, type LoadedImage } from './app/image-source.js';
import { runDemoOcr, type PlacementChoice } from './app/ocr-run.js';
import { drawBoxes, highlightBox } from './app/overlay.js';
import { renderSteps } from './app/steps-panel.js';
import './styles.css';

declare global {
  interface Window {
    /** The page's Tandem client. */
    tandem: Tandem;
  }
}

/** The samples shipped in demo/public/samples. */
const SAMPLES = [
  { file: 'receipt.png', title: 'Receipt' },
  { file: 'sign.png', title: 'Sign' },
  { file: 'paragraph.png', title: 'Paragraph' },
] as const;
/** The model the page wakes on load: recognition runs on the server by default. */
const SERVER_MODEL = 'paddleocr-rec';

const params = new URLSearchParams(location.search);
const tandem = createTandem({
  server: location.origin,
  allowSoftwareGpu: params.has('allowSoftwareGpu'),
  // Recognition runs on the server; fetching its file in the background lets this device take
  // over when the server is gone.
  prefetch: true,
});
window.tandem = tandem;

const byId = <T extends Element>(id: string, type: new () => T): T => {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`#${id} is missing`);
  return element;
};
const ui = {
  status: byId('server-status', HTMLElement),
  placement: byId('placement', HTMLFieldSetElement),
  samples: byId('samples', HTMLElement),
  drop: byId('drop', HTMLLabelElement),
  file: byId('file', HTMLInputElement),
  stage: byId('stage', HTMLElement),
  preview: byId('preview', HTMLImageElement),
  overlay: byId('overlay', SVGSVGElement),
  jobs: byId('jobs', HTMLOListElement),
  jobsHint: byId('jobs-hint', HTMLElement),
  lines: byId('lines', HTMLOListElement),
  textHint: byId('text-hint', HTMLElement),
  panelBody: byId('panel-body', HTMLTableSectionElement),
};

// ---- server status: the page-load "wake up" call -------------------------------------------

function setStatus(state: 'pending' | 'ready' | 'down', text: string): void {
  ui.status.querySelector('.dot')?.setAttribute('data-state', state);
  const label = ui.status.querySelector('.text');
  if (label !== null) label.textContent = text;
  document.body.dataset.server = state;
}

setStatus('pending', 'Server: waking the recognition model…');
tandem.warm(SERVER_MODEL).then(
  () => setStatus('ready', 'Server: ready, recognition model warm'),
  (error: unknown) =>
    setStatus(
      'down',
      `Server unavailable (${TandemError.from(error).code}): steps run on this device`,
    ),
);

// ---- the dictionary, fetched once ----------------------------------------------------------

let dictionary: Promise<OcrDictionary> | undefined;
const getDictionary = (): Promise<OcrDictionary> => {
  dictionary ??= loadDictionary(new URL(DICTIONARY_FILE, document.baseURI)).catch(
    (error: unknown) => {
      dictionary = undefined; // let the next run try again
      throw error;
    },
  );
  return dictionary;
};

// ---- picking an image ----------------------------------------------------------------------

let current: LoadedImage | undefined;

for (const sample of SAMPLES) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'sample';
  button.dataset.sample = sample.file;
  const url = new URL(`samples/${sample.file}`, document.baseURI).href;
  const thumb = document.createElement('img');
  thumb.src = url;
  thumb.alt = '';
  const caption = document.createElement('span');
  caption.textContent = sample.title;
  button.append(thumb, caption);
  button.addEventListener('click', () => {
    void pick(() => loadImageUrl(url, sample.title));
  });
  ui.samples.append(button);
}

ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  if (file !== undefined) void pick(() => loadImage(file, file.name));
  ui.file.value = '';
});
ui.drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.drop.classList.remove('over');
  const file = event.dataTransfer?.files[0];
  if (file !== undefined) void pick(() => loadImage(file, file.name));
});

async function pick(load: () => Promise<LoadedImage>): Promise<void> {
  let image: LoadedImage;
  try {
    image = await load();
  } catch (error) {
    showFailure(TandemError.from(error));
    return;
  }
  if (current !== undefined) URL.revokeObjectURL(current.url);
  current = image;
  ui.preview.src = image.url;
  ui.preview.alt = `${image.name}, ${image.rgba.width}×${image.rgba.height}`;
  ui.stage.hidden = false;
  ui.overlay.replaceChildren();
  await start(image);
}

function placementChoice(): PlacementChoice {
  const checked = ui.placement.querySelector<HTMLInputElement>('input:checked');
  const value = checked?.value;
  return value === 'local' || value === 'server' ? value : 'auto';
}

const preset = params.get('placement');
if (preset === 'local' || preset === 'server' || preset === 'auto') {
  const input = ui.placement.querySelector<HTMLInputElement>(`input[value="${preset}"]`);
  if (input !== null) input.checked = true;
}
ui.placement.addEventListener('change', () => {
  if (current !== undefined) void start(current);
});

// ---- running OCR ---------------------------------------------------------------------------

let running: AbortController | undefined;

async function start(image: LoadedImage): Promise<void> {
  running?.abort();
  const controller = new AbortController();
  running = controller;
  document.body.dataset.state = 'running';
  ui.jobs.replaceChildren();
  ui.jobsHint.textContent = `Reading “${image.name}”…`;
  ui.lines.replaceChildren();
  ui.textHint.textContent = 'Waiting for the first lines…';
  renderSteps(ui.panelBody, []);
  const started = performance.now();
  try {
    const lines = await runDemoOcr(image.rgba, {
      tandem,
      dictionary: await getDictionary(),
      placement: placementChoice(),
      signal: controller.signal,
      addProgress: (label) => addProgress(label, image),
      onStep: (steps) => {
        if (running === controller) renderSteps(ui.panelBody, steps);
      },
    });
    if (running !== controller) return;
    showLines(image, lines);
    ui.jobsHint.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
    document.body.dataset.state = 'done';
  } catch (error) {
    if (running !== controller) return;
    showFailure(TandemError.from(error));
  }
}

function addProgress(label: string, image: LoadedImage): TandemProgressElement {
  const item = document.createElement('li');
  const progress = document.createElement('tandem-progress');
  progress.setAttribute('label', label);
  const title = document.createElement('span');
  title.className = 'job-title';
  title.textContent = label;
  item.append(title, progress);
  ui.jobs.append(item);
  // Retry re-runs the whole image: a later step needs the earlier ones' results.
  progress.addEventListener('retry', () => void start(image));
  return progress;
}

function showLines(image: LoadedImage, lines: readonly OcrLine[]): void {
  drawBoxes(ui.overlay, image.rgba, lines);
  if (lines.length === 0) {
    ui.textHint.textContent = 'No text found in this image.';
    return;
  }
  ui.textHint.textContent = `${lines.length} line${lines.length === 1 ? '' : 's'}, in reading order. Hover one to find it in the image.`;
  ui.lines.replaceChildren(
    ...lines.map((line, index) => {
      const item = document.createElement('li');
      item.tabIndex = 0;
      item.dataset.line = String(index + 1);
      const text = document.createElement('span');
      text.className = 'line-text';
      text.textContent = line.text;
      const confidence = document.createElement('span');
      confidence.className = 'confidence';
      confidence.textContent = `${Math.round(line.confidence * 100)}%`;
      confidence.title = 'recognition confidence';
      item.append(text, confidence);
      const on = (): void => highlightBox(ui.overlay, index + 1);
      const off = (): void => highlightBox(ui.overlay, undefined);
      item.addEventListener('mouseenter', on);
      item.addEventListener('focus', on);
      item.addEventListener('mouseleave', off);
      item.addEventListener('blur', off);
      return item;
    }),
  );
}

function showFailure(error: TandemError): void {
  document.body.dataset.state = error.code === 'E_CANCELLED' ? 'cancelled' : 'error';
  ui.textHint.textContent =
    error.code === 'E_CANCELLED'
      ? 'Cancelled. Pick an image to start again.'
      : `Could not read the image: ${error.message} (${error.code}).`;
}
