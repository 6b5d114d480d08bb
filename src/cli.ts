#!/usr/bin/env node
// V8's flags first, and only then the rest of pristine is loaded: they hold from the first garbage
// collection on, as if given on node's command line (loading pristine's modules collects garbage; no
// collection should begin under some flags and end under others).
import './runtime-tuning.js';

const { main } = await import('./program.js');
await main(process.argv);
