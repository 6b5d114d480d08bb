/** How many test files run side by side (vitest's maxWorkers); one moto is started for each. */
export const MAX_WORKERS = 7;
