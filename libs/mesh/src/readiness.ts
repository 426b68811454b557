/**
 * Readiness of a service as a set of named conditions (nats, redis, model, ...): ready when all hold.
 * Liveness is simpler: the process answers at all. Plain class; the Nest module provides one instance.
 */
export class Readiness {
  private readonly conditions = new Map<string, boolean>();

  /** Declare a condition that must hold before the service reports ready. */
  require(name: string): void {
    if (!this.conditions.has(name)) this.conditions.set(name, false);
  }

  set(name: string, ok: boolean): void {
    this.conditions.set(name, ok);
  }

  get ready(): boolean {
    for (const ok of this.conditions.values()) if (!ok) return false;
    return true;
  }

  snapshot(): Record<string, boolean> {
    return Object.fromEntries(this.conditions);
  }
}
