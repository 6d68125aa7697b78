/**
 * Waits raced against one failure that may come later (a rate floor broken, a session
 * failed on the peer's side): guard(work) settles as `work` does, or rejects with the
 * failure as soon as fail() is called. The waits in flight are kept in a set and dropped
 * as they settle: racing each against one long-lived promise would leave a reaction on it
 * per wait, holding what each resolved with (a session of 100,000 files grew by ~2 KB a
 * file that way).
 */
export class FailureGate<E> {
  #failure: E | undefined;
  readonly #waiting = new Set<(error: E) => void>();

  /** The failure, once there is one (the first only). */
  get failure(): E | undefined {
    return this.#failure;
  }

  guard<T>(work: Promise<T>): Promise<T> {
    if (this.#failure !== undefined) {
      work.catch(() => {});
      return Promise.reject(this.#failure);
    }
    return new Promise<T>((resolve, reject) => {
      this.#waiting.add(reject);
      work.then(
        (value) => {
          this.#waiting.delete(reject);
          resolve(value);
        },
        (error: unknown) => {
          this.#waiting.delete(reject);
          reject(error);
        },
      );
    });
  }

  /** Rejects every wait in flight, and every later one, with `error`; true if it was the first failure. */
  fail(error: E): boolean {
    if (this.#failure !== undefined) return false;
    this.#failure = error;
    for (const reject of this.#waiting) reject(error);
    this.#waiting.clear();
    return true;
  }
}
