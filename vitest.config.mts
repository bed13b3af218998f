import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["test/unit/**/*.test.ts"],
        testTimeout: 30000,
        // index.ts's image-pull watch reads a cluster during an update; the mocks are no cluster.
        env: { COT_IMAGE_WATCH: "0" },
    },
});
