import { describe, expect, it } from 'vitest';
import type { AwsCallListener } from '../../src/collect/clients.js';
import { createMetrics } from '../../src/daemon/metrics.js';

describe('createMetrics', () => {
  it('uses a registry of its own, with default process metrics prefixed pristine_', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(a.registry).not.toBe(b.registry);
    a.cycles.inc({ outcome: 'ok' });
    const textB = await b.registry.metrics();
    expect(textB).toContain('pristine_cycles_total{outcome="ok"} 0');
    const textA = await a.registry.metrics();
    expect(textA).toContain('pristine_cycles_total{outcome="ok"} 1');
    expect(textA).toMatch(/^pristine_process_cpu_user_seconds_total /m);
    expect(textA).toMatch(/^pristine_nodejs_heap_size_total_bytes /m);
  });

  it('starts every outcome and verdict series at 0', async () => {
    const text = await createMetrics().registry.metrics();
    for (const outcome of ['ok', 'tainted', 'incomplete', 'failed']) {
      expect(text).toContain(`pristine_cycles_total{outcome="${outcome}"} 0`);
    }
    for (const outcome of ['started', 'done', 'rolled-back', 'failed', 'held']) {
      expect(text).toContain(`pristine_replacements_total{outcome="${outcome}"} 0`);
    }
    for (const outcome of ['sent', 'failed', 'dropped']) {
      expect(text).toContain(`pristine_slack_messages_total{outcome="${outcome}"} 0`);
    }
    for (const verdict of ['pristine', 'tainted', 'unknown']) {
      expect(text).toContain(`pristine_instances{verdict="${verdict}"} 0`);
    }
  });

  it('exposes the series with their labels after updates', async () => {
    const m = createMetrics();
    m.cycles.inc({ outcome: 'tainted' });
    m.cycles.inc({ outcome: 'tainted' });
    m.cycleDuration.observe(42);
    m.lastCycle.set(1_764_000_000);
    m.setVerdicts({ pristine: 7, tainted: 2, unknown: 1 });
    m.replacements.inc({ outcome: 'rolled-back' });
    m.slack.inc({ outcome: 'dropped' });
    m.onAwsCall({ service: 'ec2', operation: 'DescribeInstances', outcome: 'ok' });
    m.onAwsCall({ service: 'ec2', operation: 'DescribeInstances', outcome: 'ok' });
    m.onAwsCall({ service: 'cloudtrail', operation: 'LookupEvents', outcome: 'error' });

    const text = await m.registry.metrics();
    expect(text).toContain('# TYPE pristine_cycles_total counter');
    expect(text).toContain('pristine_cycles_total{outcome="tainted"} 2');
    expect(text).toContain('# TYPE pristine_cycle_duration_seconds histogram');
    expect(text).toContain('pristine_cycle_duration_seconds_bucket{le="30"} 0');
    expect(text).toContain('pristine_cycle_duration_seconds_bucket{le="60"} 1');
    expect(text).toContain('pristine_cycle_duration_seconds_bucket{le="1800"} 1');
    expect(text).toContain('pristine_cycle_duration_seconds_sum 42');
    expect(text).toContain('pristine_cycle_duration_seconds_count 1');
    expect(text).toContain('pristine_last_cycle_timestamp_seconds 1764000000');
    expect(text).toContain('pristine_instances{verdict="pristine"} 7');
    expect(text).toContain('pristine_instances{verdict="tainted"} 2');
    expect(text).toContain('pristine_instances{verdict="unknown"} 1');
    expect(text).toContain('pristine_replacements_total{outcome="rolled-back"} 1');
    expect(text).toContain('pristine_slack_messages_total{outcome="dropped"} 1');
    expect(text).toContain('pristine_aws_calls_total{service="ec2",operation="DescribeInstances",outcome="ok"} 2');
    expect(text).toContain('pristine_aws_calls_total{service="cloudtrail",operation="LookupEvents",outcome="error"} 1');
  });

  it('setFindings zeroes detectors seen before but absent now', async () => {
    const m = createMetrics();
    m.setFindings({ 'interactive-session': 3, 'package-drift': 5 });
    let text = await m.registry.metrics();
    expect(text).toContain('pristine_findings{detector="interactive-session"} 3');
    expect(text).toContain('pristine_findings{detector="package-drift"} 5');

    m.setFindings({ 'remote-command': 1 });
    text = await m.registry.metrics();
    expect(text).toContain('pristine_findings{detector="interactive-session"} 0');
    expect(text).toContain('pristine_findings{detector="package-drift"} 0');
    expect(text).toContain('pristine_findings{detector="remote-command"} 1');

    m.setFindings({});
    text = await m.registry.metrics();
    expect(text).toContain('pristine_findings{detector="remote-command"} 0');
  });

  it('onAwsCall is a bound AwsCallListener that ignores the extra fields', async () => {
    const m = createMetrics();
    const listener: AwsCallListener = m.onAwsCall;
    listener({ service: 'ssm', operation: 'ListCommands', region: 'eu-west-1', outcome: 'error', errorName: 'ThrottlingException' });
    const text = await m.registry.metrics();
    expect(text).toContain('pristine_aws_calls_total{service="ssm",operation="ListCommands",outcome="error"} 1');
    expect(text).not.toContain('eu-west-1');
  });
});
