import { describe, expect, it } from 'vitest';
import { Breaker } from '../src/breaker.ts';

function setup(threshold = 3, cooldownMs = 1_000) {
  let now = 1_000_000;
  const log: string[] = [];
  const breaker = new Breaker({
    failureThreshold: threshold,
    cooldownMs,
    now: () => now,
    onOpen: () => log.push('open'),
    onClose: (ms) => log.push(`close after ${ms}`),
  });
  return { breaker, log, advance: (ms: number) => (now += ms) };
}

describe('Breaker', () => {
  it('opens after failureThreshold consecutive failures, not after interleaved ones', () => {
    const { breaker, log } = setup(3);
    breaker.failure(new Error('1'));
    breaker.failure(new Error('2'));
    breaker.success();
    breaker.failure(new Error('3'));
    breaker.failure(new Error('4'));
    expect(breaker.name).toBe('closed');
    expect(breaker.allowsRequests).toBe(true);
    breaker.failure(new Error('5'));
    expect(breaker.name).toBe('open');
    expect(breaker.allowsRequests).toBe(false);
    expect(log).toEqual(['open']);
  });

  it('lets one probe through after the cooldown; success closes it and reports the downtime', () => {
    const { breaker, log, advance } = setup(1, 1_000);
    breaker.failure(new Error('down'));
    expect(breaker.startProbe()).toBe(false);
    advance(999);
    expect(breaker.msUntilProbe()).toBe(1);
    advance(1);
    expect(breaker.startProbe()).toBe(true);
    expect(breaker.name).toBe('half-open');
    expect(breaker.allowsRequests).toBe(false);
    expect(breaker.startProbe()).toBe(false);
    advance(5);
    breaker.success();
    expect(breaker.name).toBe('closed');
    expect(log).toEqual(['open', 'close after 1005']);
  });

  it('a failed probe waits another full cooldown and keeps counting downtime from the first failure', () => {
    const { breaker, log, advance } = setup(1, 1_000);
    breaker.failure(new Error('down'));
    advance(1_000);
    expect(breaker.startProbe()).toBe(true);
    breaker.failure(new Error('still down'));
    expect(breaker.name).toBe('open');
    expect(breaker.msUntilProbe()).toBe(1_000);
    advance(1_000);
    expect(breaker.startProbe()).toBe(true);
    breaker.success();
    expect(log).toEqual(['open', 'close after 2000']);
  });

  it('ignores a late success while open and forceOpen only from closed', () => {
    const { breaker, log } = setup(5);
    breaker.forceOpen(new Error('never ready'));
    expect(breaker.name).toBe('open');
    breaker.success();
    expect(breaker.name).toBe('open');
    breaker.forceOpen(new Error('again'));
    expect(log).toEqual(['open']);
  });
});
