/** How close the server is to `max_connections`. */
export type ConnectionLevel = 'ok' | 'warn' | 'critical';

/** Thresholds as fractions of the connection budget (`max_connections` minus reserved). */
export interface LevelThresholds {
  readonly warnAt: number;
  readonly criticalAt: number;
  /** A level is left only once usage falls this far below its threshold. */
  readonly hysteresis: number;
}

/**
 * The level after observing `usage` while at `current`. Rising is immediate; falling back needs
 * usage below the threshold minus `hysteresis`, so a value hovering at a threshold does not flap.
 */
export function nextLevel(current: ConnectionLevel, usage: number, t: LevelThresholds): ConnectionLevel {
  if (usage >= t.criticalAt) return 'critical';
  if (current === 'critical' && usage >= t.criticalAt - t.hysteresis) return 'critical';
  if (usage >= t.warnAt) return 'warn';
  if (current !== 'ok' && usage >= t.warnAt - t.hysteresis) return 'warn';
  return 'ok';
}
