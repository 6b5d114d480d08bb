#!/usr/bin/env node
// V8's flags first, and only then the rest of pristine is loaded: they hold from the first garbage
// collection on, as if given on node's command line (a collection that began before a flag turned
// off concurrent marking would end without it).
import './runtime-tuning.js';

const { main } = await import('./program.js');
await main(process.argv);
