import { guardTampered } from './guard-tampered.js';
import { instanceModified } from './instance-modified.js';
import { interactiveSession } from './interactive-session.js';
import { packageDrift } from './package-drift.js';
import { remoteCommand } from './remote-command.js';
import type { Detector, DetectorId } from './types.js';
import { unrecordedImage } from './unrecorded-image.js';

/** Every detector, by its stable id. Adding one: its module, and a line here. */
export const DETECTORS: { readonly [K in DetectorId]: Detector } = {
  'interactive-session': interactiveSession as Detector,
  'remote-command': remoteCommand as Detector,
  'instance-modified': instanceModified as Detector,
  'package-drift': packageDrift as Detector,
  'unrecorded-image': unrecordedImage as Detector,
  'guard-tampered': guardTampered as Detector,
};

/** Detectors that run whatever a policy's `detect` says. */
export const ALWAYS_ON: readonly DetectorId[] = ['unrecorded-image'];
