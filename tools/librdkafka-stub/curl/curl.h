/*
 * An empty stand-in for <curl/curl.h>, on the C include path of every build
 * (.cargo/config.toml sets CPATH, unless the environment already does).
 *
 * Why: librdkafka 2.12.1 (rdkafka-sys 4.10, built from source by the
 * `kafka` feature) has `#ifdef WITH_OAUTHBEARER_OIDC` around
 * `#include <curl/curl.h>` in rdkafka_conf.c, but its config.h defines
 * that macro with `#cmakedefine01`, i.e. always (to 0 here: tickcap builds
 * it without curl and without OpenSSL, so OIDC is off). Nothing of curl is
 * used: the only curl macro sits inside `#if WITH_OAUTHBEARER_OIDC`, which
 * is 0. Without this file the build needs libcurl's headers installed
 * (`apt-get install libcurl4-openssl-dev`) for nothing; with it, a fresh
 * machine builds with cmake alone. Real curl headers, where installed in
 * the system directories, come after CPATH and are not used by anything
 * in this tree.
 */
