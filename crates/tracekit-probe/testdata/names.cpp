// A C++ method, an operator, a function template, a function in an anonymous namespace, a
// call operator and a lambda, called N times each (`names_cpp N`): their symbols are mangled
// (_ZN2tk3Foo3barEi, ...) and found by their C++ names; the operator's name holds `[`, which a
// pattern would read as a class, and the last three hold parentheses.
#include <cstdio>
#include <cstdlib>

namespace tk {
struct Foo {
    __attribute__((noinline)) int bar(int x);
    __attribute__((noinline)) int operator[](int i);
};
int Foo::bar(int x) { return x + 1; }
int Foo::operator[](int i) { return i * 3; }

template <typename T> __attribute__((noinline)) T twice(T x) { return x + x; }

struct Adder {
    int k;
    __attribute__((noinline)) int operator()(int x) const { return x + k; }
};
}

namespace {
__attribute__((noinline)) int hidden(int x) { return x - 1; }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? std::atol(argv[1]) : 1, sum = 0;
    tk::Foo foo;
    tk::Adder add{2};
    auto scaled = [&](int x) __attribute__((noinline)) { return x * static_cast<int>(n); };
    for (long i = 0; i < n; i++) {
        sum += foo.bar(static_cast<int>(i));
        sum += tk::twice<long>(i);
        sum += foo[static_cast<int>(i)];
        sum += hidden(static_cast<int>(i)) + add(static_cast<int>(i)) + scaled(static_cast<int>(i));
    }
    std::printf("%ld\n", sum);
    return 0;
}
