/** How close the server is to `max_connections`. */
export type ConnectionLevel = 'ok' | 'warn' | 'critical';

/**
 * The level after observing `usage` while at `current` (the thresholds are `MonitorOptions`'
 * fractions of the connection budget). Rising is immediate; falling back needs usage below the
 * threshold minus `hysteresis`, so a value hovering at a threshold does not flap.
 */
export function nextLevel(
  current: ConnectionLevel,
  usage: number,
  t: { readonly warnAt: number; readonly criticalAt: number; readonly hysteresis: number },
): ConnectionLevel {
  if (usage >= t.criticalAt) return 'critical';
  if (current === 'critical' && usage >= t.criticalAt - t.hysteresis) return 'critical';
  if (usage >= t.warnAt) return 'warn';
  if (current !== 'ok' && usage >= t.warnAt - t.hysteresis) return 'warn';
  return 'ok';
}
