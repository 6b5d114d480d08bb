// A replacement killed with SIGKILL in prepare, launch, wait-running, register, then restarted, completes exactly once
// (the other steps: see test/support/crash-resume.ts).
import { killedAtEachStep, STEPS } from '../support/crash-resume.js';

killedAtEachStep(STEPS.slice(0, 4));
