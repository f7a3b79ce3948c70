"""Tests on the real kernel: the program via BPF_PROG_TEST_RUN, the daemon on veths in throwaway namespaces."""
