/**
 * Package versions from a dpkg or rpm list and from SSM Inventory, brought to one form so they compare:
 * `EPOCH:VERSION-RELEASE`, with the epoch left out when it is empty or 0.
 *
 * - dpkg lists write `1:2.38.1-5+deb12u3` in one string (epoch, upstream version, Debian revision).
 * - rpm lists written as name/version/arch usually hold `EPOCH:VERSION-RELEASE` too.
 * - SSM Inventory splits them: Version, Release, Epoch; on Debian it often leaves Version whole.
 */
export interface VersionParts {
  version: string;
  release?: string | null;
  epoch?: string | null;
}

const EPOCH_PREFIX = /^(\d+):(.*)$/;

export function normalizeVersion(parts: VersionParts | string): string {
  const p = typeof parts === 'string' ? { version: parts } : parts;
  let version = p.version.trim();
  let epoch = (p.epoch ?? '').trim();
  const embedded = EPOCH_PREFIX.exec(version);
  if (embedded) {
    // An epoch written into the version wins only when the separate field is empty.
    if (epoch === '') epoch = embedded[1] ?? '';
    version = embedded[2] ?? '';
  }
  const release = (p.release ?? '').trim();
  if (release !== '' && !version.endsWith(`-${release}`)) version = `${version}-${release}`;
  if (/^0*$/.test(epoch)) return version;
  return `${String(Number(epoch))}:${version}`;
}
