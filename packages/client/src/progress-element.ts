// <tandem-progress>: a framework-free progress element for Tandem jobs. `element.job = job` follows
// a job to its end; `update(event)` drives it by hand. Importing this module defines the element
// (the `@tandem/client/progress` subpath); the main entry never imports it, and importing it where
// there is no DOM (Node, SSR) defines nothing and does not throw.

import type { ProgressEvent } from '@tandem/shared';
import {
  ProgressViewModel,
  type ProgressError,
  type ProgressResult,
  type ProgressState,
  type ProgressView,
} from './progress-view-model.js';
import type { RunResult } from './run-result.js';

/** The element's tag name. */
export const TANDEM_PROGRESS_TAG = 'tandem-progress';

/** What `element.job` accepts: a {@link Job} or anything shaped like one. */
export interface ProgressJob extends PromiseLike<RunResult>, AsyncIterable<ProgressEvent> {
  /** Stops the job; it then rejects with `E_CANCELLED`. */
  cancel(): void;
}

/** `detail` of the `done` event. */
export interface ProgressDoneDetail {
  /**
   * Where and on what it ran (the job's RunResult when the element followed one, typed only for
   * what the element shows); absent when the element was driven by a `done` event alone.
   */
  readonly result: ProgressResult | undefined;
  /** The job the element followed, if it was given one: `await detail.job` for its outputs. */
  readonly job: ProgressJob | undefined;
}

/** `detail` of the `failed`, `cancelled` and `retry` events. */
export interface ProgressErrorDetail {
  /** The error; absent when the element was ended by an `error` or `cancelled` event alone. */
  readonly error: ProgressError | undefined;
  /** The job the element followed, if it was given one. */
  readonly job: ProgressJob | undefined;
}

/** `detail` of the `cancelrequest` event. */
export interface ProgressCancelDetail {
  readonly job: ProgressJob | undefined;
}

/** The events `<tandem-progress>` dispatches (all bubble and cross shadow roots). */
export interface TandemProgressEventMap {
  /** The job finished. */
  done: CustomEvent<ProgressDoneDetail>;
  /** The job failed (any code but `E_CANCELLED`). */
  failed: CustomEvent<ProgressErrorDetail>;
  /** The job was cancelled. */
  cancelled: CustomEvent<ProgressErrorDetail>;
  /** The person pressed Retry: the app starts the work again and sets a new job. */
  retry: CustomEvent<ProgressErrorDetail>;
  /** The person pressed Cancel. Cancelable: `preventDefault()` keeps `job.cancel()` from being called. */
  cancelrequest: CustomEvent<ProgressCancelDetail>;
}

const STYLE = /* css */ `
:host {
  display: block;
  font: var(--tandem-progress-font, 400 0.875rem/1.4 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif);
  color: inherit;
  --_color: var(--tandem-progress-color, #2563eb);
  --_done: var(--tandem-progress-done-color, var(--_color));
  --_error: var(--tandem-progress-error-color, #c2410c);
  --_muted: var(--tandem-progress-muted-color, color-mix(in srgb, currentColor 62%, transparent));
}
:host([hidden]) { display: none; }
[hidden] { display: none !important; }
.base { display: grid; gap: 0.375rem; min-width: 0; }
.row { display: flex; align-items: center; justify-content: space-between; gap: 0.75rem; min-width: 0; }
.label {
  font-weight: 500; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-variant-numeric: tabular-nums;
}
.eta, .where { color: var(--_muted); font-size: 0.9em; font-variant-numeric: tabular-nums; }
.eta { white-space: nowrap; }
.where { min-width: 0; }
.bar {
  position: relative; overflow: hidden;
  height: var(--tandem-progress-height, 0.5rem);
  border-radius: var(--tandem-progress-radius, 999px);
  background: var(--tandem-progress-track, color-mix(in srgb, currentColor 12%, transparent));
}
.fill {
  height: 100%; width: 0; border-radius: inherit; background-color: var(--_color);
  transition: width 0.2s ease-out, background-color 0.2s;
}
.base[data-state='running']:not([data-mode='measured']) .fill {
  background-image: linear-gradient(90deg, transparent 0%, rgb(255 255 255 / 0.28) 50%, transparent 100%);
  background-size: 12rem 100%;
  background-repeat: no-repeat;
  animation: tandem-progress-sheen 1.8s linear infinite;
}
.base[data-state='done'] .fill { background-color: var(--_done); }
.base[data-state='error'] .fill { background-color: var(--_error); }
.base[data-state='cancelled'] .fill { background-color: var(--_muted); }
@keyframes tandem-progress-sheen {
  from { background-position: -12rem 0; }
  to { background-position: calc(100% + 12rem) 0; }
}
.actions { display: flex; gap: 0.5rem; flex: none; }
button {
  font: inherit; font-size: 0.85em; line-height: 1.2; color: inherit; cursor: pointer;
  padding: 0.3rem 0.75rem; border-radius: 0.375rem;
  border: 1px solid color-mix(in srgb, currentColor 24%, transparent);
  background: transparent;
}
button:hover { background: color-mix(in srgb, currentColor 8%, transparent); }
button:focus-visible { outline: 2px solid var(--_color); outline-offset: 2px; }
.error {
  padding: 0.4rem 0.625rem; border-radius: 0.375rem;
  border-inline-start: 3px solid var(--_error);
  background: color-mix(in srgb, var(--_error) 8%, transparent);
  overflow-wrap: anywhere;
}
.error-code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-weight: 600; color: var(--_error); }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip-path: inset(50%); white-space: nowrap;
}
@media (prefers-reduced-motion: reduce) {
  .fill { transition: none !important; }
  .base .fill { animation: none !important; background-image: none !important; }
}
`;

// Fixed markup, no data in it: every text goes in with textContent.
const TEMPLATE = `
<div class="base" part="base" data-state="idle" data-mode="estimate">
  <div class="row">
    <span class="label" part="label"></span>
    <span class="eta" part="eta"></span>
  </div>
  <div class="bar" part="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0">
    <div class="fill" part="fill"></div>
  </div>
  <div class="row">
    <span class="where" part="where"></span>
    <span class="actions">
      <button type="button" class="cancel" part="cancel" hidden>Cancel</button>
      <button type="button" class="retry" part="retry" hidden>Retry</button>
    </span>
  </div>
  <div class="error" part="error" hidden><span class="error-code" part="error-code"></span> <span class="error-message" part="error-message"></span></div>
  <div class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
</div>`;

let sharedSheet: CSSStyleSheet | undefined;

/** Adds the styles: one constructed sheet shared by every instance where supported. */
function adoptStyles(root: ShadowRoot): void {
  if (typeof CSSStyleSheet === 'function' && 'adoptedStyleSheets' in root) {
    try {
      if (sharedSheet === undefined) {
        sharedSheet = new CSSStyleSheet();
        sharedSheet.replaceSync(STYLE);
      }
      root.adoptedStyleSheets = [sharedSheet];
      return;
    } catch {
      // constructable sheets unsupported: fall through to a <style> element
    }
  }
  const style = document.createElement('style');
  style.textContent = STYLE;
  root.prepend(style);
}

// Where there is no DOM the class still has a base to extend, so importing never throws.
const ElementBase: typeof HTMLElement =
  typeof HTMLElement === 'undefined'
    ? // eslint-disable-next-line @typescript-eslint/no-extraneous-class -- a stand-in, never constructed
      (class {} as unknown as typeof HTMLElement)
    : HTMLElement;

/**
 * `<tandem-progress>`: shows a Tandem job's progress: the stage in words, a bar whose value never
 * goes backwards and reaches 100 only when the job is done, the time left, where it runs and on
 * what backend, a Cancel button, and a clear error with its code and a Retry button.
 *
 * Attributes: `label` (the bar's accessible name, default "Model progress"), `hide-cancel`,
 * `hide-retry`. Reflects `state` (`idle | running | done | error | cancelled`) on the host.
 * Events: see {@link TandemProgressEventMap}. Parts: base, label, eta, bar, fill, where, cancel,
 * retry, error, error-code, error-message. Custom properties: `--tandem-progress-color`,
 * `--tandem-progress-done-color`, `--tandem-progress-error-color`, `--tandem-progress-muted-color`,
 * `--tandem-progress-track`, `--tandem-progress-height`, `--tandem-progress-radius`,
 * `--tandem-progress-font`.
 */
export class TandemProgressElement extends ElementBase {
  /** Attributes the element reacts to. */
  static readonly observedAttributes = ['label', 'hide-cancel', 'hide-retry'];

  readonly #model = new ProgressViewModel();
  #job: ProgressJob | undefined;
  /** Bumped whenever the job changes, so a previous job's late events are ignored. */
  #generation = 0;
  #frame = 0;
  #lastState: ProgressState = 'idle';
  readonly #parts: {
    readonly base: HTMLElement;
    readonly label: HTMLElement;
    readonly eta: HTMLElement;
    readonly bar: HTMLElement;
    readonly fill: HTMLElement;
    readonly where: HTMLElement;
    readonly cancel: HTMLButtonElement;
    readonly retry: HTMLButtonElement;
    readonly error: HTMLElement;
    readonly errorCode: HTMLElement;
    readonly errorMessage: HTMLElement;
    readonly live: HTMLElement;
  };

  /** Builds the shadow tree; the element shows "Not started" until it gets a job or an event. */
  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = TEMPLATE;
    adoptStyles(root);
    const get = <T extends HTMLElement>(selector: string, type: new () => T): T => {
      const found = root.querySelector(selector);
      if (!(found instanceof type)) throw new Error(`tandem-progress: no ${selector} in template`);
      return found;
    };
    this.#parts = {
      base: get('.base', HTMLElement),
      label: get('.label', HTMLElement),
      eta: get('.eta', HTMLElement),
      bar: get('.bar', HTMLElement),
      fill: get('.fill', HTMLElement),
      where: get('.where', HTMLElement),
      cancel: get('.cancel', HTMLButtonElement),
      retry: get('.retry', HTMLButtonElement),
      error: get('.error', HTMLElement),
      errorCode: get('.error-code', HTMLElement),
      errorMessage: get('.error-message', HTMLElement),
      live: get('[role="status"]', HTMLElement),
    };
    this.#parts.cancel.addEventListener('click', () => this.#onCancel());
    this.#parts.retry.addEventListener('click', () => this.#onRetry());
  }

  /** @internal custom element lifecycle */
  connectedCallback(): void {
    this.#render();
  }

  /** @internal custom element lifecycle: stops the animation frame loop. */
  disconnectedCallback(): void {
    this.#stopFrames();
  }

  /** @internal custom element lifecycle */
  attributeChangedCallback(): void {
    this.#render();
  }

  /**
   * The job to follow. Setting it resets the element, replays the job's progress from its first
   * event, and shows its result or error when it settles. `undefined` detaches (the job goes on).
   */
  get job(): ProgressJob | undefined {
    return this.#job;
  }

  set job(job: ProgressJob | undefined) {
    if (job === this.#job) return;
    const generation = ++this.#generation;
    this.#job = job;
    this.#model.reset();
    this.#render();
    if (job === undefined) return;
    const current = (): boolean => generation === this.#generation;
    void (async () => {
      for await (const event of job) {
        if (!current()) return;
        // The job's settlement (below) ends the element, with the result or error attached.
        if (event.stage !== 'done' && event.stage !== 'error' && event.stage !== 'cancelled')
          this.update(event);
      }
    })().catch(() => undefined);
    job.then(
      (result) => {
        if (current()) this.showResult(result);
      },
      (error: unknown) => {
        if (current()) this.showError(error);
      },
    );
  }

  /** The current state: `idle`, `running`, `done`, `error` or `cancelled`. */
  get state(): ProgressState {
    return this.#model.state;
  }

  /** The bar's value in 0..100 now (100 only when done). */
  get value(): number {
    return this.#model.view().value;
  }

  /** Shows one progress event (manual driving, e.g. events from `onProgress` or a server). */
  update(event: ProgressEvent): void {
    this.#model.update(event);
    this.#render();
  }

  /** Shows the job as done, with where and on what backend it ran (a RunResult fits). */
  showResult(result: ProgressResult): void {
    this.#model.showResult(result);
    this.#render();
  }

  /** Shows an error: its `code` and message, and a Retry button. `E_CANCELLED` shows as cancelled. */
  showError(error: unknown): void {
    this.#model.showError(error);
    this.#render();
  }

  /** Back to "Not started"; detaches from the job without cancelling it. */
  reset(): void {
    this.#generation++;
    this.#job = undefined;
    this.#model.reset();
    this.#render();
  }

  /** Typed for the element's own events ({@link TandemProgressEventMap}) and any other. */
  override addEventListener<K extends keyof TandemProgressEventMap>(
    type: K,
    listener: (this: TandemProgressElement, event: TandemProgressEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /** Typed for the element's own events ({@link TandemProgressEventMap}) and any other. */
  override removeEventListener<K extends keyof TandemProgressEventMap>(
    type: K,
    listener: (this: TandemProgressElement, event: TandemProgressEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  // ---- internals ------------------------------------------------------------------------------

  #onCancel(): void {
    const proceed = this.#emit('cancelrequest', { job: this.#job }, true);
    if (proceed) this.#job?.cancel();
  }

  #onRetry(): void {
    this.#emit('retry', { error: this.#model.view().error, job: this.#job }, false);
  }

  #emit<K extends keyof TandemProgressEventMap>(
    type: K,
    detail: TandemProgressEventMap[K]['detail'],
    cancelable: boolean,
  ): boolean {
    return this.dispatchEvent(
      new CustomEvent(type, { detail, bubbles: true, composed: true, cancelable }),
    );
  }

  #render(): void {
    const view = this.#model.view();
    const parts = this.#parts;
    parts.base.dataset.state = view.state;
    parts.base.dataset.mode = view.mode;
    if (this.isConnected && this.getAttribute('state') !== view.state)
      this.setAttribute('state', view.state);
    setText(parts.label, view.label);
    setText(parts.eta, view.eta);
    setText(parts.where, view.where);
    parts.fill.style.width = `${view.value.toFixed(2)}%`;
    setAttr(parts.bar, 'aria-valuenow', String(view.percent));
    setAttr(parts.bar, 'aria-valuetext', view.valueText);
    setAttr(parts.bar, 'aria-label', this.getAttribute('label') ?? 'Model progress');
    setText(parts.live, view.announcement);

    const ended = view.state === 'error' || view.state === 'cancelled';
    const cancelFocused = this.shadowRoot?.activeElement === parts.cancel;
    parts.cancel.hidden = view.state !== 'running' || this.hasAttribute('hide-cancel');
    parts.retry.hidden = !ended || this.hasAttribute('hide-retry');
    const error = view.state === 'error' ? view.error : undefined;
    parts.error.hidden = error === undefined;
    setText(parts.errorCode, error?.code ?? '');
    setText(parts.errorMessage, error === undefined ? '' : errorSentence(error));
    // Keyboard users who pressed Cancel keep their place: focus moves to Retry.
    if (cancelFocused && parts.cancel.hidden && !parts.retry.hidden) parts.retry.focus();

    this.#dispatchOutcome(view);
    if (view.animating && this.isConnected) this.#startFrames();
    else this.#stopFrames();
  }

  /** Dispatches `done`, `failed` or `cancelled` once, when the state first becomes one. */
  #dispatchOutcome(view: ProgressView): void {
    const previous = this.#lastState;
    this.#lastState = view.state;
    if (previous === view.state) return;
    if (view.state === 'done') {
      this.#emit('done', { result: this.#model.result, job: this.#job }, false);
    } else if (view.state === 'error' || view.state === 'cancelled') {
      this.#emit(
        view.state === 'error' ? 'failed' : 'cancelled',
        {
          error: view.error,
          job: this.#job,
        },
        false,
      );
    }
  }

  #startFrames(): void {
    if (this.#frame !== 0 || typeof requestAnimationFrame !== 'function') return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#render();
    });
  }

  #stopFrames(): void {
    if (this.#frame === 0) return;
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
  }
}

function setText(element: HTMLElement, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

function setAttr(element: HTMLElement, name: string, value: string): void {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/** The error's message, then when to try again if it says; the two read as two sentences. */
function errorSentence(error: ProgressError): string {
  if (error.retryAfterMs === undefined || error.retryAfterMs <= 0) return error.message;
  const wait = `Try again in ${Math.ceil(error.retryAfterMs / 1000)} s.`;
  // Messages (the server's among them) rarely end with a full stop.
  const message = error.message.trim();
  if (message === '') return wait;
  return `${message}${/[.!?]$/.test(message) ? '' : '.'} ${wait}`;
}

/**
 * Defines `<tandem-progress>` (or `tag`) unless that name is taken. Importing this module already
 * does it for the default tag; where there is no `customElements` it does nothing.
 * @returns the element class
 */
export function defineTandemProgress(
  tag: string = TANDEM_PROGRESS_TAG,
): typeof TandemProgressElement {
  const registry = (globalThis as { customElements?: CustomElementRegistry }).customElements;
  if (registry !== undefined && registry.get(tag) === undefined) {
    // A second tag needs its own class: one constructor may back only one name.
    registry.define(
      tag,
      tag === TANDEM_PROGRESS_TAG ? TandemProgressElement : class extends TandemProgressElement {},
    );
  }
  return TandemProgressElement;
}

defineTandemProgress();

declare global {
  interface HTMLElementTagNameMap {
    'tandem-progress': TandemProgressElement;
  }
}

export {
  ProgressViewModel,
  backendName,
  formatByteProgress,
  formatBytes,
  formatDuration,
  formatEta,
} from './progress-view-model.js';
export type {
  ProgressError,
  ProgressMode,
  ProgressResult,
  ProgressState,
  ProgressView,
  ProgressViewModelOptions,
} from './progress-view-model.js';
