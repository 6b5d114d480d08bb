/**
 * Renders a Notice as a Slack Block Kit message (`renderSlack`) or as plain text for a terminal
 * (`renderPlain`). Pure: no I/O, no clock.
 *
 * Everything that comes from AWS or from a policy (names, summaries, ARNs, reasons) is escaped for
 * Slack's mrkdwn (`&`, `<`, `>`), so a tag value can never ping a channel or forge a link, and is
 * clipped so every message stays within Slack's limits: header text 150 characters, section text
 * 3000, a section field 2000, 10 fields a section, 10 context elements, 50 blocks a message.
 */
import type { ReportFinding, ReportInstance } from '../report/model.js';
import type { Notice, PlannedAction } from './types.js';

// ---------------------------------------------------------------------------------------------
// A minimal Block Kit subset, structurally compatible with @slack/types' KnownBlock.

export interface PlainTextObject {
  type: 'plain_text';
  text: string;
  emoji?: boolean;
}
export interface MrkdwnObject {
  type: 'mrkdwn';
  text: string;
}
export type TextObject = PlainTextObject | MrkdwnObject;

export interface HeaderBlock {
  type: 'header';
  text: PlainTextObject;
}
export interface SectionBlock {
  type: 'section';
  text?: TextObject;
  fields?: TextObject[];
}
export interface ContextBlock {
  type: 'context';
  elements: TextObject[];
}
export interface DividerBlock {
  type: 'divider';
}
export type Block = HeaderBlock | SectionBlock | ContextBlock | DividerBlock;

export interface SlackMessage {
  /** plain-text fallback: notifications, screen readers; mrkdwn-escaped */
  text: string;
  blocks: Block[];
}

/** Slack's documented limits, and the caps pristine applies on top of them. */
export const SLACK_LIMITS = {
  headerText: 150,
  sectionText: 3000,
  fieldText: 2000,
  fieldsPerSection: 10,
  contextElements: 10,
  contextText: 3000,
  blocks: 50,
  /** top-level `text`: Slack truncates at 40,000; 4,000 is its advice; we stay well under */
  fallbackText: 3000,
} as const;

/** at most this many findings are shown in a `taint` message, the rest are counted */
export const MAX_FINDINGS_SHOWN = 10;
/** at most this many instances are listed in a `digest` message, the rest are counted */
export const MAX_DIGEST_ITEMS = 20;

// ---------------------------------------------------------------------------------------------
// Text helpers

const ELLIPSIS = '…';

/** Cuts a raw string to at most `max` UTF-16 units, never splitting a surrogate pair. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  if (max <= 0) return '';
  let cut = s.slice(0, max - 1);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return cut + ELLIPSIS;
}

/**
 * Cuts an already-formatted mrkdwn string to at most `max` units without leaving half an entity
 * (`&am`), half a `<…>` token (a date or a link) or an open code span behind.
 */
export function clipMrkdwn(s: string, max: number): string {
  if (s.length <= max) return s;
  if (max <= 1) return max === 1 ? ELLIPSIS : '';
  let cut = s.slice(0, max - 2); // room for a closing backtick and the ellipsis
  const lastLt = cut.lastIndexOf('<');
  if (lastLt > cut.lastIndexOf('>')) cut = cut.slice(0, lastLt);
  const lastAmp = cut.lastIndexOf('&');
  if (lastAmp >= 0 && cut.indexOf(';', lastAmp) < 0 && lastAmp >= cut.length - 6) cut = cut.slice(0, lastAmp);
  const lastUnit = cut.charCodeAt(cut.length - 1);
  if (lastUnit >= 0xd800 && lastUnit <= 0xdbff) cut = cut.slice(0, -1);
  const ticks = (cut.match(/`/g) ?? []).length;
  return cut + (ticks % 2 === 1 ? '`' : '') + ELLIPSIS;
}

/** Escapes the three characters Slack's mrkdwn treats as control characters. */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A value (raw) as escaped mrkdwn, clipped first so the escaped form stays bounded. */
function esc(s: string, max = 500): string {
  return escapeMrkdwn(clip(s, max));
}

/** A value as an inline code span (ids, ARNs): backticks inside would end it early. */
function code(s: string, max = 500): string {
  return '`' + escapeMrkdwn(clip(s.replace(/`/g, "'"), max)) + '`';
}

/** Plain text for a terminal: one line, control characters removed. */
function line(s: string, max = 1000): string {
  // eslint-disable-next-line no-control-regex
  return clip(s.replace(/[\u0000-\u001f\u007f]+/g, ' '), max);
}

/** `<!date^EPOCH^{date_short_pretty} {time}|ISO>`: shown in each reader's time zone. */
export function slackDate(iso: string): string {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return esc(iso, 64);
  const fallback = escapeMrkdwn(new Date(ms).toISOString()).replace(/\|/g, '');
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time}|${fallback}>`;
}

const mrkdwn = (text: string): MrkdwnObject => ({ type: 'mrkdwn', text });
const header = (text: string): HeaderBlock => ({
  type: 'header',
  text: { type: 'plain_text', text: clip(text.replace(/\s+/g, ' '), SLACK_LIMITS.headerText), emoji: true },
});
const section = (text: string): SectionBlock => ({
  type: 'section',
  text: mrkdwn(clipMrkdwn(text, SLACK_LIMITS.sectionText)),
});
const fieldsSection = (fields: string[]): SectionBlock => ({
  type: 'section',
  fields: fields.slice(0, SLACK_LIMITS.fieldsPerSection).map((f) => mrkdwn(clipMrkdwn(f, SLACK_LIMITS.fieldText))),
});
const context = (...texts: string[]): ContextBlock => ({
  type: 'context',
  elements: texts.slice(0, SLACK_LIMITS.contextElements).map((t) => mrkdwn(clipMrkdwn(t, SLACK_LIMITS.contextText))),
});
const divider = (): DividerBlock => ({ type: 'divider' });

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

// ---------------------------------------------------------------------------------------------
// Facts shared by both renderings

const SEVERITY_RANK: Record<ReportFinding['severity'], number> = { critical: 0, high: 1, medium: 2, low: 3 };

/**
 * The findings a message shows: the most significant `max` (proofs before unknowns, then by
 * severity), told in the order they happened (undated last).
 */
export function selectFindings(findings: readonly ReportFinding[], max = MAX_FINDINGS_SHOWN): ReportFinding[] {
  const indexed = findings.map((f, i) => ({ f, i }));
  const chosen =
    indexed.length <= max
      ? indexed
      : [...indexed]
          .sort(
            (a, b) =>
              (a.f.effect === b.f.effect ? 0 : a.f.effect === 'taint' ? -1 : 1) ||
              SEVERITY_RANK[a.f.severity] - SEVERITY_RANK[b.f.severity] ||
              a.i - b.i,
          )
          .slice(0, max);
  const time = (f: ReportFinding) => {
    const t = f.at === null ? NaN : Date.parse(f.at);
    return Number.isFinite(t) ? t : Infinity;
  };
  return chosen.sort((a, b) => time(a.f) - time(b.f) || a.i - b.i).map((x) => x.f);
}

function detectorsOf(findings: readonly ReportFinding[]): string[] {
  return [...new Set(findings.map((f) => f.detector))];
}

function instanceLabel(i: ReportInstance): string {
  return i.name && i.name.trim() !== '' ? i.name : i.instanceId;
}

function accountRegion(i: ReportInstance): string {
  return `${i.accountId ?? 'unknown account'} / ${i.region}`;
}

/** The sentence saying what pristine will do, in full (taint notices). */
function actionSentence(a: PlannedAction): string {
  switch (a.kind) {
    case 'replace':
      return 'Replace it: launch a fresh instance from its recorded image, then retire this one. Progress is posted in this thread.';
    case 'observe':
      return 'Alert only: the policy is in observe mode, so pristine will not change or replace this instance.';
    case 'hold':
      return `Hold: pristine will not replace it for now. Reason: ${a.reason}`;
    case 'dry-run':
      return 'Dry run: pristine would replace it, but it runs with dry-run set, so nothing will be changed.';
  }
}

/** A short label for what pristine will do (digests, fallbacks). */
export function actionLabel(a: PlannedAction): string {
  switch (a.kind) {
    case 'replace':
      return 'replace';
    case 'observe':
      return 'alert only (observe mode)';
    case 'hold':
      return `hold: ${a.reason}`;
    case 'dry-run':
      return 'dry run';
  }
}

const PROGRESS_EMOJI: Record<Extract<Notice, { type: 'progress' }>['outcome'], string> = {
  started: ':arrows_counterclockwise:',
  progress: ':hourglass_flowing_sand:',
  done: ':white_check_mark:',
  failed: ':x:',
  'rolled-back': ':warning:',
  held: ':double_vertical_bar:',
};

const PROGRESS_WORD: Record<Extract<Notice, { type: 'progress' }>['outcome'], string> = {
  started: 'started',
  progress: 'in progress',
  done: 'done',
  failed: 'FAILED',
  'rolled-back': 'ROLLED BACK',
  held: 'held',
};

const OLD_INSTANCE: Record<NonNullable<Extract<Notice, { type: 'progress' }>['oldInstance']>, string> = {
  serving: 'keeps serving',
  deregistering: 'is being taken out of its target groups',
  draining: 'is out of its target groups and draining its connections',
  drained: 'is drained and out of service, not terminated yet',
  terminated: 'is terminated',
};

/** What to say of the old instance: where it stands, when the notice says; a failure or rollback queued by an older pristine meant it kept serving. */
function oldInstanceSays(n: Extract<Notice, { type: 'progress' }>): string | null {
  if (n.oldInstance) return n.outcome === 'done' ? null : OLD_INSTANCE[n.oldInstance];
  return n.outcome === 'failed' || n.outcome === 'rolled-back' ? OLD_INSTANCE.serving : null;
}

// ---------------------------------------------------------------------------------------------
// Slack

type TaintNotice = Extract<Notice, { type: 'taint' }>;
type DigestNotice = Extract<Notice, { type: 'digest' }>;
type BreakerNotice = Extract<Notice, { type: 'breaker' }>;
type ProgressNotice = Extract<Notice, { type: 'progress' }>;

/** Renders a notice as Block Kit, with a plain-text fallback in `text`. */
export function renderSlack(notice: Notice): SlackMessage {
  let msg: SlackMessage;
  switch (notice.type) {
    case 'taint':
      msg = slackTaint(notice);
      break;
    case 'digest':
      msg = slackDigest(notice);
      break;
    case 'breaker':
      msg = slackBreaker(notice);
      break;
    case 'progress':
      msg = slackProgress(notice);
      break;
  }
  return { text: clipMrkdwn(msg.text, SLACK_LIMITS.fallbackText), blocks: capBlocks(msg.blocks) };
}

function capBlocks(blocks: Block[]): Block[] {
  if (blocks.length <= SLACK_LIMITS.blocks) return blocks;
  const kept = blocks.slice(0, SLACK_LIMITS.blocks - 1);
  return [...kept, context(`_${plural(blocks.length - kept.length, 'more block')} left out to fit Slack's limit._`)];
}

function findingText(f: ReportFinding, n: number): string {
  const effect = f.effect === 'unknown' ? ' · cannot vouch (unknown)' : '';
  return [
    `*${n}. ${esc(f.detector, 100)}* · ${esc(f.severity, 20)} severity${effect}`,
    `*When:* ${f.at === null ? 'unknown' : slackDate(f.at)}`,
    `*Who:* ${f.actor === null ? 'unknown' : code(f.actor, 600)}`,
    `*What:* ${esc(f.summary, 1500)}`,
  ].join('\n');
}

function slackTaint(n: TaintNotice): SlackMessage {
  const i = n.instance;
  const label = instanceLabel(i);
  const shown = selectFindings(n.findings);
  const more = n.findings.length - shown.length;

  const fields = [
    `*Instance*\n${code(i.instanceId, 100)}`,
    `*Name*\n${i.name ? esc(i.name, 300) : '_none_'}`,
    `*Account / region*\n${esc(accountRegion(i), 200)}`,
    `*Image*\n${code(i.imageId, 200)}`,
    `*Policy*\n${esc(i.policy, 300)}`,
    `*Launched*\n${slackDate(i.launchTime)}`,
  ];
  if (i.autoScalingGroup) fields.push(`*Auto Scaling group*\n${esc(i.autoScalingGroup, 300)}`);

  const blocks: Block[] = [header(`Tainted: ${label}`), fieldsSection(fields), divider()];
  blocks.push(section(`*${plural(n.findings.length, 'finding')}: what was done to it, by whom, when*`));
  shown.forEach((f, k) => blocks.push(section(findingText(f, k + 1))));
  if (shown.length === 0) blocks.push(section('_No finding was attached to this notice._'));
  if (more > 0) {
    blocks.push(context(`+${plural(more, 'more finding')} not shown (${n.findings.length} in total); \`pristine audit\` lists them all.`));
  }
  if (i.gaps.length > 0) {
    const gaps = i.gaps.slice(0, 3).map((g) => `${esc(g.source, 60)}: ${esc(g.message, 300)}`);
    if (i.gaps.length > 3) gaps.push(`+${i.gaps.length - 3} more`);
    blocks.push(context(`Some evidence could not be read: ${gaps.join('; ')}`));
  }
  blocks.push(divider());
  blocks.push(section(`*What pristine will do:* ${esc(actionSentence(n.action), 1500)}`));

  const first = shown[0];
  const firstText = first
    ? ` First: ${esc(first.detector, 60)} by ${first.actor === null ? 'unknown' : esc(first.actor, 300)}${first.at === null ? '' : ` at ${esc(first.at, 40)}`}: ${esc(first.summary, 300)}.`
    : '';
  const text =
    `Tainted: ${esc(label, 200)} (${esc(i.instanceId, 60)}, ${esc(accountRegion(i), 100)}, policy ${esc(i.policy, 100)}): ` +
    `${plural(n.findings.length, 'finding')}.${firstText} Action: ${esc(actionLabel(n.action), 600)}.`;
  return { text, blocks };
}

function digestLine(item: DigestNotice['items'][number]): string {
  const i = item.instance;
  const name = i.name ? `*${esc(i.name, 200)}* ` : '';
  const dets = detectorsOf(item.findings);
  return [
    `${name}${code(i.instanceId, 100)} · ${esc(i.region, 40)} · policy ${esc(i.policy, 200)}`,
    `Detectors: ${dets.length > 0 ? dets.map((d) => esc(d, 60)).join(', ') : '_none_'} (${plural(item.findings.length, 'finding')})`,
    `Action: ${esc(actionLabel(item.action), 600)}`,
  ].join('\n');
}

function actionTally(items: DigestNotice['items']): string {
  const counts = new Map<string, number>();
  for (const it of items) {
    const k = it.action.kind === 'hold' ? 'hold' : actionLabel(it.action);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, c]) => `${k}: ${c}`).join(' · ');
}

function slackDigest(n: DigestNotice): SlackMessage {
  const total = n.items.length;
  const shown = n.items.slice(0, MAX_DIGEST_ITEMS);
  const more = total - shown.length;
  const blocks: Block[] = [
    header(`Tainted: ${plural(total, 'instance')}`),
    section(`*${plural(total, 'instance')}* found changed in place this cycle. ${total > 0 ? esc(actionTally(n.items), 1000) : ''}`),
    divider(),
  ];
  for (const it of shown) blocks.push(section(digestLine(it)));
  if (more > 0) blocks.push(context(`+${plural(more, 'more instance')} not listed (${total} in total); \`pristine audit\` lists them all.`));
  const names = shown.slice(0, 5).map((it) => esc(instanceLabel(it.instance), 80));
  const text =
    `Tainted: ${plural(total, 'instance')} found changed in place` +
    (names.length > 0 ? `: ${names.join(', ')}${total > names.length ? ` and ${total - names.length} more` : ''}` : '') +
    (total > 0 ? `. Actions: ${esc(actionTally(n.items), 1000)}.` : '.');
  return { text, blocks };
}

function breakerSentence(n: BreakerNotice, policy: string): string {
  return (
    `Breaker tripped for policy ${policy}: ${n.tainted} of ${n.inScope} in-scope instances are tainted ` +
    `(limit ${n.limitPercent}%). Nothing will be replaced until this is looked at.`
  );
}

function percent(n: BreakerNotice): string {
  if (n.inScope <= 0) return 'n/a';
  return `${Math.round((n.tainted / n.inScope) * 1000) / 10}%`;
}

function slackBreaker(n: BreakerNotice): SlackMessage {
  const sentence = `:rotating_light: ${breakerSentence(n, `*${esc(n.policy, 300)}*`)}`;
  return {
    text: `:rotating_light: ${breakerSentence(n, esc(n.policy, 300))}`,
    blocks: [
      header(`:rotating_light: Breaker tripped: ${n.policy}`),
      section(sentence),
      context(
        `${percent(n)} of the policy's fleet is tainted; the limit is ${n.limitPercent}%. ` +
          'So many at once points at something fleet-wide (a bad rollout, an automation, or an attack) rather than one-off changes. ' +
          'Alerts continue; replacements resume once the share falls below the limit.',
      ),
    ],
  };
}

function slackProgress(n: ProgressNotice): SlackMessage {
  const parts = [`${PROGRESS_EMOJI[n.outcome]} *${esc(n.step, 200)}*: ${PROGRESS_WORD[n.outcome]}`];
  if (n.message.trim() !== '') parts[0] += ` — ${esc(n.message, 2000)}`;
  if (n.newInstanceId) parts.push(`New instance: ${code(n.newInstanceId, 100)}`);
  const old = oldInstanceSays(n);
  if (old) parts.push(`The old instance ${code(n.instanceId, 100)} ${old}.`);
  const text = parts.join('\n');
  return { text, blocks: [section(text)] };
}

// ---------------------------------------------------------------------------------------------
// Plain text, for a terminal

/** Renders a notice as multi-line plain text (no mrkdwn, no emoji codes). */
export function renderPlain(notice: Notice): string {
  switch (notice.type) {
    case 'taint':
      return plainTaint(notice);
    case 'digest':
      return plainDigest(notice);
    case 'breaker':
      return `!!! ${breakerSentence(notice, line(notice.policy, 300))}`;
    case 'progress':
      return plainProgress(notice);
  }
}

function plainTaint(n: TaintNotice): string {
  const i = n.instance;
  const shown = selectFindings(n.findings);
  const more = n.findings.length - shown.length;
  const out = [
    `TAINTED: ${line(instanceLabel(i), 300)}`,
    `  instance  ${line(i.instanceId, 100)}`,
    `  name      ${i.name ? line(i.name, 300) : '-'}`,
    `  account   ${line(accountRegion(i), 200)}`,
    `  image     ${line(i.imageId, 200)}`,
    `  policy    ${line(i.policy, 300)}`,
    `  launched  ${line(i.launchTime, 60)}`,
  ];
  if (i.autoScalingGroup) out.push(`  asg       ${line(i.autoScalingGroup, 300)}`);
  out.push(`  ${plural(n.findings.length, 'finding')}:`);
  shown.forEach((f, k) => {
    const effect = f.effect === 'unknown' ? '; pristine cannot vouch for it' : '';
    out.push(`  ${k + 1}. ${f.detector} (${f.severity}${effect})`);
    out.push(`     when: ${f.at ?? 'unknown'}`);
    out.push(`     who:  ${f.actor === null ? 'unknown' : line(f.actor, 600)}`);
    out.push(`     what: ${line(f.summary, 2000)}`);
  });
  if (more > 0) out.push(`  +${plural(more, 'more finding')} not shown (${n.findings.length} in total)`);
  for (const g of i.gaps.slice(0, 3)) out.push(`  evidence gap: ${line(g.source, 60)}: ${line(g.message, 300)}`);
  if (i.gaps.length > 3) out.push(`  +${i.gaps.length - 3} more evidence gaps`);
  out.push(`  What pristine will do: ${line(actionSentence(n.action).replace(' Progress is posted in this thread.', ''), 1500)}`);
  return out.join('\n');
}

function plainDigest(n: DigestNotice): string {
  const total = n.items.length;
  const shown = n.items.slice(0, MAX_DIGEST_ITEMS);
  const out = [`TAINTED: ${plural(total, 'instance')} found changed in place${total > 0 ? ` (${actionTally(n.items)})` : ''}`];
  for (const it of shown) {
    const i = it.instance;
    const dets = detectorsOf(it.findings);
    out.push(
      `  ${line(i.instanceId, 100)}  ${i.name ? line(i.name, 100) : '-'}  ${line(i.region, 40)}  ` +
        `[${dets.join(', ') || 'no findings'}]  -> ${line(actionLabel(it.action), 600)}`,
    );
  }
  if (total > shown.length) out.push(`  +${plural(total - shown.length, 'more instance')} not listed (${total} in total)`);
  return out.join('\n');
}

function plainProgress(n: ProgressNotice): string {
  let first = `${line(n.instanceId, 100)}: ${line(n.step, 200)}: ${PROGRESS_WORD[n.outcome]}`;
  if (n.message.trim() !== '') first += ` - ${line(n.message, 2000)}`;
  const out = [first];
  if (n.newInstanceId) out.push(`  new instance: ${line(n.newInstanceId, 100)}`);
  const old = oldInstanceSays(n);
  if (old) out.push(`  The old instance ${line(n.instanceId, 100)} ${old}.`);
  return out.join('\n');
}
