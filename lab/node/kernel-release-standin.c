/*
 * Stand-in for the kernel a distribution would boot (lab/node/README.md): a simulated node is a container
 * on this machine's kernel, so uname(2) would report this machine's release (6.18.x-...), which no distribution
 * ships packages for. Preloaded into every process of the node through /etc/ld.so.preload, this library answers
 * uname() with the release written in /etc/simulated-kernel-release (for example 6.8.0-49-generic), so that
 * `uname -r`, Ansible's kernel fact, DKMS and apt see the platform's kernel. Everything else uname() reports is
 * the real kernel's. Without the file, or with an empty one, uname() is left alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#define RELEASE_FILE "/etc/simulated-kernel-release"

int uname(struct utsname *name)
{
    static int (*real_uname)(struct utsname *);
    if (real_uname == NULL)
        real_uname = (int (*)(struct utsname *))dlsym(RTLD_NEXT, "uname");
    int result = real_uname(name);
    if (result != 0)
        return result;

    FILE *file = fopen(RELEASE_FILE, "re");
    if (file == NULL)
        return result;
    char release[sizeof name->release];
    if (fgets(release, sizeof release, file) != NULL) {
        release[strcspn(release, "\n")] = '\0';
        if (release[0] != '\0')
            memcpy(name->release, release, sizeof release);
    }
    fclose(file);
    return result;
}
