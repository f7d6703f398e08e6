// comlink speaks the DOM's MessagePort shape; Node's worker_threads ports are EventEmitters. This
// adapts one to the other (what comlink's own node-adapter does, without its untyped subpath).

import type { Endpoint } from 'comlink';

/** The part of a worker_threads Worker or MessagePort the adapter uses. */
export interface NodePort {
  postMessage(message: unknown, transfer?: readonly unknown[]): void;
  on(event: 'message', listener: (data: unknown) => void): unknown;
  off(event: 'message', listener: (data: unknown) => void): unknown;
  start?: () => void;
}

type Handler = EventListenerOrEventListenerObject;

/** A comlink Endpoint over a Node worker or port. */
export function nodeEndpoint(port: NodePort): Endpoint {
  const listeners = new WeakMap<Handler, (data: unknown) => void>();
  return {
    postMessage: (message: unknown, transfer?: Transferable[]) =>
      port.postMessage(message, transfer),
    addEventListener: (_type: string, handler: Handler) => {
      const listener = (data: unknown): void => {
        const event = { data } as MessageEvent;
        if (typeof handler === 'function') handler(event);
        else handler.handleEvent(event);
      };
      port.on('message', listener);
      listeners.set(handler, listener);
    },
    removeEventListener: (_type: string, handler: Handler) => {
      const listener = listeners.get(handler);
      if (listener === undefined) return;
      port.off('message', listener);
      listeners.delete(handler);
    },
    ...(port.start === undefined ? {} : { start: port.start.bind(port) }),
  };
}
