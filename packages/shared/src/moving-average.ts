// Exponentially weighted moving averages of measured durations, on both sides: the server's ETAs
// and the client's placement estimates come from these, never from
// made-up constants: until something is measured, the estimate is undefined.

/** An exponentially weighted moving average that is undefined until its first sample. */
export class MovingAverage {
  #value: number | undefined;
  #samples = 0;

  /**
   * @param alpha weight of the newest sample in (0, 1]. @default 0.2
   */
  constructor(private readonly alpha = 0.2) {}

  /** Adds one measurement. */
  add(sample: number): void {
    if (!Number.isFinite(sample) || sample < 0) return;
    this.#samples += 1;
    // The first few samples are averaged plainly so one cold outlier does not dominate for long.
    const weight = Math.max(this.alpha, 1 / this.#samples);
    this.#value =
      this.#value === undefined ? sample : this.#value + weight * (sample - this.#value);
  }

  /** The current average, or undefined before the first sample. */
  get value(): number | undefined {
    return this.#value;
  }

  /** How many samples were added. */
  get samples(): number {
    return this.#samples;
  }
}
