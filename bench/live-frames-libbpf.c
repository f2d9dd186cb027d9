// The libbpf floor for XDP live frames, as xdp-trafficgen sends them: load one program with
// libbpf, then bpf_prog_test_run_opts() with BPF_F_TEST_XDP_LIVE_FRAMES, CALLS times REPEAT
// frames out of IFNAME. Prints the kernel's ns per frame of each call and the wall time.
// Built and run by bench/prog-live.sh; usage: live-frames-libbpf OBJ PROG IFNAME REPEAT CALLS BATCH
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s OBJ PROG IFNAME REPEAT CALLS BATCH\n", argv[0]);
        return 2;
    }
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj || bpf_object__load(obj)) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, argv[2]);
    if (!prog) {
        fprintf(stderr, "no program %s\n", argv[2]);
        return 1;
    }
    unsigned ifindex = if_nametoindex(argv[3]);
    unsigned repeat = atoi(argv[4]), calls = atoi(argv[5]), batch = atoi(argv[6]);
    // The same 42-byte UDP frame to port 9 that `tracekit prog run --packet` builds.
    unsigned char pkt[42] = {
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        0x45, 0, 0, 0x1c, 0, 0, 0x40, 0, 0x40, 0x11, 0x26, 0xcf, 10, 0, 0, 1, 10, 0, 0, 2,
        0x9c, 0x40, 0x00, 0x09, 0x00, 0x08, 0x4f, 0x92,
    };
    struct xdp_md ctx = { .data = 0, .data_end = sizeof(pkt), .ingress_ifindex = ifindex };
    for (unsigned i = 0; i < calls; i++) {
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt),
                    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = repeat,
                    .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch);
        double t0 = now_ns();
        int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
        double wall = now_ns() - t0;
        if (err) {
            fprintf(stderr, "test run failed: %d\n", err);
            return 1;
        }
        printf("%u %.0f\n", opts.duration, wall);
    }
    return 0;
}
