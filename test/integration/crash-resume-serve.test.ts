// A replacement killed with SIGKILL in wait-healthy, deregister-old, wait-drained, terminate-old, then restarted, completes exactly once
// (the other steps: see test/support/crash-resume.ts).
import { killedAtEachStep, STEPS } from '../support/crash-resume.js';

killedAtEachStep(STEPS.slice(4));
