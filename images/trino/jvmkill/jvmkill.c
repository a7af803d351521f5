/*
 * Stand-in for the jvmkill agent of trinodb/trino's image (/usr/lib/trino/bin/libjvmkill.so, loaded by the first
 * line of its default jvm.config, -agentpath:/usr/lib/trino/bin/libjvmkill.so). Same contract: a JVMTI agent that
 * ends the JVM with SIGKILL as soon as the JVM reports a resource exhaustion (heap, or no more native threads),
 * instead of letting a half-broken server limp on. Our own minimal text, written against the JVMTI specification.
 */
#include <jvmti.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void JNICALL resource_exhausted(jvmtiEnv *jvmti, JNIEnv *jni, jint flags, const void *reserved,
                                       const char *description) {
    (void)jvmti; (void)jni; (void)flags; (void)reserved;
    fprintf(stderr, "jvmkill: ResourceExhausted: %s: killing the JVM\n", description ? description : "?");
    fflush(stderr);
    kill(getpid(), SIGKILL);
}

JNIEXPORT jint JNICALL Agent_OnLoad(JavaVM *vm, char *options, void *reserved) {
    jvmtiEnv *jvmti = NULL;
    jvmtiEventCallbacks callbacks;
    (void)options; (void)reserved;
    if ((*vm)->GetEnv(vm, (void **)&jvmti, JVMTI_VERSION_1_0) != JNI_OK || jvmti == NULL) {
        fprintf(stderr, "jvmkill: no JVMTI environment\n");
        return JNI_ERR;
    }
    memset(&callbacks, 0, sizeof(callbacks));
    callbacks.ResourceExhausted = resource_exhausted;
    if ((*jvmti)->SetEventCallbacks(jvmti, &callbacks, (jint)sizeof(callbacks)) != JVMTI_ERROR_NONE ||
        (*jvmti)->SetEventNotificationMode(jvmti, JVMTI_ENABLE, JVMTI_EVENT_RESOURCE_EXHAUSTED, NULL)
            != JVMTI_ERROR_NONE) {
        fprintf(stderr, "jvmkill: cannot register for ResourceExhausted\n");
        return JNI_ERR;
    }
    return JNI_OK;
}
