// docker-compose.yml is what a user runs to try two replicas: it must say what the daemon expects.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateSchedule } from '../../src/daemon/schedule.js';
import { repoRoot } from '../support/fixtures.js';

interface Service {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  command?: string[];
  ports?: string[];
  depends_on?: Record<string, unknown>;
}

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
  const replicas = Object.entries(compose.services).filter(([, s]) => s.build === '.');

  it('runs two pristine replicas on one PostgreSQL, each reaching it by PRISTINE_STATE_URL', () => {
    const postgres = compose.services['postgres'] as Service;
    expect(postgres.image).toMatch(/^postgres:/);
    expect(replicas).toHaveLength(2);
    const { POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB } = postgres.environment as Record<string, string>;
    for (const [, s] of replicas) {
      expect(s.environment?.['PRISTINE_STATE_URL']).toBe(`postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}`);
      expect(s.depends_on).toHaveProperty('postgres');
    }
  });

  it('starts each replica as a daemon with a valid schedule, no state file, and a port of its own', () => {
    for (const [, s] of replicas) {
      const cmd = s.command as string[];
      expect(cmd[0]).toBe('daemon');
      expect(cmd).not.toContain('--state');
      validateSchedule(cmd[cmd.indexOf('--schedule') + 1] as string);
    }
    const hostPorts = replicas.map(([, s]) => s.ports?.[0]?.split(':')[0]);
    expect(new Set(hostPorts).size).toBe(2);
  });

  it('gives moto for local trying, reached the standard way (AWS_ENDPOINT_URL)', () => {
    expect(compose.services['moto']?.image).toMatch(/^motoserver\/moto/);
    for (const [, s] of replicas) expect(s.environment?.['AWS_ENDPOINT_URL']).toBe('http://moto:5000');
  });
});
