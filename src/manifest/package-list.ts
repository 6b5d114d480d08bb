import { z } from 'zod';
import { InputError } from '../errors.js';
import { parseOrThrow } from '../validation.js';

export type PackageManager = 'dpkg' | 'rpm';

export interface Package {
  name: string;
  version: string;
  arch: string;
}

export interface PackageList {
  packageManager: PackageManager;
  packages: Package[];
}

export interface ParsePackageListOptions {
  /** Skip detection: the list is known to come from this package manager. */
  packageManager?: PackageManager;
}

/** Architecture names only dpkg uses (`dpkg-architecture -L` plus `all`). */
const DPKG_ARCHES = new Set([
  'all', 'amd64', 'arm64', 'armhf', 'armel', 'i386', 'ppc64el', 'mips64el', 'mipsel', 'x32', 'loong64',
  'hurd-i386', 'hurd-amd64', 'kfreebsd-amd64', 'kfreebsd-i386', 'powerpc', 'powerpcspe', 'sparc64', 'sh4', 'm68k', 'alpha', 'hppa', 'ia64',
]);

/** Architecture names only rpm uses. (`s390x`, `riscv64`, `ppc64` are shared, so they decide nothing.) */
const RPM_ARCHES = new Set([
  'x86_64', 'aarch64', 'noarch', 'i686', 'i586', 'i486', 'ppc64le', 'armv7hl', 'armv7hnl', 'armv6hl', 'armv7l', 'ppc', 'ppc64p7', 'sparcv9',
]);

/** Release tags that only appear in one family's versions, for lists whose arches decide nothing. */
const DPKG_VERSION_HINT = /(?:\+deb\d|ubuntu\d|[+~]bpo\d|\+b\d+$|\+really)/;
const RPM_VERSION_HINT = /\.(?:el\d|fc\d|amzn\d|module\+el|suse|sle\d|mga\d|azl\d|cm\d|al\d)/;

const TSV_SHAPE = 'expected name<TAB>version<TAB>arch';

/**
 * Parse a baked image's package list: either `dpkg-query`/`rpm -qa` output in three tab-separated
 * columns (name, version, arch) or a CycloneDX JSON SBOM whose components carry `pkg:deb` or
 * `pkg:rpm` purls. Versions are kept exactly as written.
 */
export function parsePackageList(text: string, file: string, options: ParsePackageListOptions = {}): PackageList {
  const body = text.replace(/^\uFEFF/, '');
  if (body.trimStart().startsWith('{')) return parseCycloneDx(body, file, options);
  return parseTsv(body, file, options);
}

function parseTsv(text: string, file: string, options: ParsePackageListOptions): PackageList {
  const packages: Package[] = [];
  const lineOf: number[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').replace(/\r$/, '');
    if (line.trim() === '') continue;
    const lineNo = i + 1;
    const cols = line.split('\t').map((c) => c.trim());
    const [name, version, arch] = cols;
    if (cols.length !== 3 || !name || !version || !arch) {
      const detail = cols.length !== 3 ? `${cols.length} column${cols.length === 1 ? '' : 's'}` : 'an empty column';
      throw new InputError(`${file}:${lineNo}: ${TSV_SHAPE} (found ${detail})`);
    }
    const key = `${name}\t${version}\t${arch}`;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new InputError(`${file}:${lineNo}: duplicate package ${name} ${version} ${arch} (first on line ${first})`);
    }
    seen.set(key, lineNo);
    packages.push({ name, version, arch });
    lineOf.push(lineNo);
  }
  if (packages.length === 0) throw new InputError(`${file}: no packages found (empty package list)`);
  const packageManager = options.packageManager ?? detectPackageManager(packages, lineOf, file);
  return { packageManager, packages };
}

/** Tell dpkg from rpm by arch names, then (if they decide nothing) by release tags in versions. */
function detectPackageManager(packages: Package[], lineOf: number[], file: string): PackageManager {
  let dpkgAt: number | undefined;
  let rpmAt: number | undefined;
  packages.forEach((p, i) => {
    if (dpkgAt === undefined && DPKG_ARCHES.has(p.arch)) dpkgAt = i;
    if (rpmAt === undefined && RPM_ARCHES.has(p.arch)) rpmAt = i;
  });
  const where = (i: number): string => {
    const p = packages[i];
    return p ? `${p.name} ${p.arch} (line ${lineOf[i] ?? '?'})` : '?';
  };
  if (dpkgAt !== undefined && rpmAt !== undefined) {
    throw new InputError(
      `${file}: mixes dpkg and rpm architectures: ${where(dpkgAt)} and ${where(rpmAt)}; ` +
        'a package list must come from one package manager',
    );
  }
  if (dpkgAt !== undefined) return 'dpkg';
  if (rpmAt !== undefined) return 'rpm';

  const dpkgHint = packages.some((p) => DPKG_VERSION_HINT.test(p.version));
  const rpmHint = packages.some((p) => RPM_VERSION_HINT.test(p.version));
  if (dpkgHint && !rpmHint) return 'dpkg';
  if (rpmHint && !dpkgHint) return 'rpm';
  const arches = [...new Set(packages.map((p) => p.arch))].slice(0, 5).join(', ');
  throw new InputError(
    `${file}: cannot tell whether this is a dpkg or an rpm package list (architectures: ${arches}); ` +
      'state the package manager (dpkg or rpm) explicitly',
  );
}

const CycloneDxComponent: z.ZodType<CdxComponent> = z.lazy(() =>
  z.looseObject({
    type: z.string(),
    name: z.string().optional(),
    version: z.string().optional(),
    purl: z.string().optional(),
    components: z.array(CycloneDxComponent).optional(),
  }),
);

interface CdxComponent {
  type: string;
  name?: string | undefined;
  version?: string | undefined;
  purl?: string | undefined;
  components?: CdxComponent[] | undefined;
}

const CycloneDxBom = z.looseObject({
  bomFormat: z.literal('CycloneDX'),
  components: z.array(CycloneDxComponent).optional(),
});

interface Purl {
  type: string;
  name: string;
  version: string | undefined;
  qualifiers: Map<string, string>;
}

/** Split a package URL (`pkg:type/namespace/name@version?qualifiers#subpath`); undefined if it isn't one. */
function parsePurl(purl: string): Purl | undefined {
  if (!/^pkg:/i.test(purl)) return undefined;
  let rest = purl.slice(4).replace(/^\/+/, '');
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const type = rest.slice(0, slash).toLowerCase();
  const lastSegment = rest.slice(rest.lastIndexOf('/') + 1);
  const at = lastSegment.indexOf('@');
  const rawName = at >= 0 ? lastSegment.slice(0, at) : lastSegment;
  const rawVersion = at >= 0 ? lastSegment.slice(at + 1) : undefined;
  const qualifiers = new Map<string, string>();
  try {
    for (const pair of query.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      qualifiers.set(pair.slice(0, eq).toLowerCase(), decodeURIComponent(pair.slice(eq + 1)));
    }
    return {
      type,
      name: decodeURIComponent(rawName),
      version: rawVersion === undefined ? undefined : decodeURIComponent(rawVersion),
      qualifiers,
    };
  } catch {
    return undefined;
  }
}

function parseCycloneDx(text: string, file: string, options: ParsePackageListOptions): PackageList {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file}: invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof data !== 'object' || data === null || (data as { bomFormat?: unknown }).bomFormat !== 'CycloneDX') {
    throw new InputError(
      `${file}: bomFormat: expected a CycloneDX SBOM ("bomFormat": "CycloneDX") or a name<TAB>version<TAB>arch package list`,
    );
  }
  const bom = parseOrThrow(CycloneDxBom, data, file);

  const packages: Package[] = [];
  const seen = new Set<string>();
  let firstDeb: string | undefined;
  let firstRpm: string | undefined;

  const visit = (components: CdxComponent[], basePath: string): void => {
    components.forEach((component, i) => {
      const path = `${basePath}[${i}]`;
      if (component.components) visit(component.components, `${path}.components`);
      if (component.type !== 'library' && component.type !== 'application') return;
      const purl = component.purl === undefined ? undefined : parsePurl(component.purl);
      if (!purl || (purl.type !== 'deb' && purl.type !== 'rpm')) return;
      if (purl.type === 'deb') firstDeb ??= path;
      else firstRpm ??= path;

      const name = component.name || purl.name;
      let version = component.version || purl.version;
      const arch = purl.qualifiers.get('arch');
      if (!name) throw new InputError(`${file}: ${path}.name: missing package name`);
      if (!version) throw new InputError(`${file}: ${path}.version: missing version for ${name}`);
      if (!arch) throw new InputError(`${file}: ${path}.purl: no arch qualifier in ${component.purl ?? ''}`);
      const epoch = purl.qualifiers.get('epoch');
      if (epoch !== undefined && epoch !== '') {
        const written = /^(\d+):/.exec(version);
        if (!written) version = `${epoch}:${version}`;
        else if (written[1] !== epoch) {
          throw new InputError(
            `${file}: ${path}.purl: epoch qualifier ${epoch} contradicts the version ${version} of ${name}`,
          );
        }
      }
      // The same package found twice (e.g. by two catalogers) says nothing new: keep it once.
      const key = `${name}\t${version}\t${arch}`;
      if (seen.has(key)) return;
      seen.add(key);
      packages.push({ name, version, arch });
    });
  };
  visit(bom.components ?? [], 'components');

  if (firstDeb !== undefined && firstRpm !== undefined) {
    throw new InputError(
      `${file}: mixes deb and rpm packages (${firstDeb} is pkg:deb, ${firstRpm} is pkg:rpm); ` +
        'an image manifest records one package manager',
    );
  }
  if (packages.length === 0) {
    throw new InputError(`${file}: components: no library or application components with a pkg:deb or pkg:rpm purl`);
  }
  const found: PackageManager = firstDeb !== undefined ? 'dpkg' : 'rpm';
  if (options.packageManager !== undefined && options.packageManager !== found) {
    throw new InputError(`${file}: the SBOM lists ${found} packages, not ${options.packageManager}`);
  }
  return { packageManager: found, packages };
}
