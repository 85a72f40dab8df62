using Xunit.Abstractions;
using Xunit.Sdk;

namespace Flotilla.Tests.Support;

/// <summary>Marks a test that breaks the class fixture (stops a process): it runs after the others of its class.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RunsLastAttribute : Attribute
{
}

/// <summary>Orders a class's tests by name, those marked <see cref="RunsLastAttribute"/> last.</summary>
public sealed class RunsLastOrderer : ITestCaseOrderer
{
    public const string TypeName = "Flotilla.Tests.Support.RunsLastOrderer";
    public const string AssemblyName = "Flotilla.Tests";

    public IEnumerable<TTestCase> OrderTestCases<TTestCase>(IEnumerable<TTestCase> testCases) where TTestCase : ITestCase =>
        testCases
            .OrderBy(t => t.TestMethod.Method.GetCustomAttributes(typeof(RunsLastAttribute).AssemblyQualifiedName).Any() ? 1 : 0)
            .ThenBy(t => t.TestMethod.Method.Name, StringComparer.Ordinal);
}
