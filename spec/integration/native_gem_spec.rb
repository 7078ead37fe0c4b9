# frozen_string_literal: true

require "spec_helper"
require "open3"
require "rubygems/package"
require "iodine/version"

# The precompiled gem of `rake native_gem`: the extension built for this Ruby's ABI in
# lib/iodine/3.1/, no extensions, so `gem install` builds nothing and needs no Rust. Installed
# and run with `env -i PATH=/usr/bin:/bin` (no cargo there, no ~/.cargo: HOME is a temp dir).
# A few seconds when the extension is up to date; `rake native_gem` runs `rake compile` first.
RSpec.describe "the precompiled (platform) gem" do
  # Runs `command` as under `env -i` with only `env` set, in `chdir`; killed after `seconds`.
  # Returns [stdout and stderr, Process::Status].
  def clean_run(env, *command, chdir: @dir, seconds: 60)
    Open3.popen2e(env, *command, unsetenv_others: true, chdir: chdir) do |stdin, out, wait|
      stdin.close
      reader = Thread.new { out.read }
      unless wait.join(seconds)
        Process.kill("KILL", wait.pid)
        wait.join
      end
      [reader.value, wait.value]
    end
  end

  # TERM, then KILL after 15 s; one that already exited (and was reaped) is left alone.
  def stop_server(pid)
    Process.kill("TERM", pid)
    deadline = Time.now + 15
    until Process.waitpid(pid, Process::WNOHANG)
      Process.kill("KILL", pid) if Time.now > deadline
      sleep 0.05
    end
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  before(:all) do
    @abi = RUBY_VERSION[/\d+\.\d+/]
    @dir = Dir.mktmpdir("iodine-native-gem")
    @pkg = File.join(@dir, "pkg")
    @gem_home = File.join(@dir, "gems")
    system_path = Gem.path.join(File::PATH_SEPARATOR) # rack, the one dependency
    @env = { "PATH" => "/usr/bin:/bin", "HOME" => File.join(@dir, "home"), "GEM_HOME" => @gem_home,
             "GEM_PATH" => [@gem_home, system_path].join(File::PATH_SEPARATOR) }
    # IODINE_PKG_DIR: the gems go to the temp dir, never over a release in the checkout's pkg/.
    # A generous bound: the extension is rebuilt first when out of date.
    out, err, status, _, timed_out = run_command({ "IODINE_PKG_DIR" => @pkg }, RbConfig.ruby, "-S", "rake", "-C", ROOT,
                                                 "native_gem", seconds: 900)
    raise "rake native_gem failed (timed out: #{timed_out}):\n#{out}#{err}" unless status.success?

    @rake_out = out + err
    @gem = File.join(@pkg, "iodine-#{Iodine::VERSION}-#{Gem::Platform.local}.gem")
    @install_out, status = clean_run(@env, "gem", "install", "--local", "--no-document", @gem)
    raise "gem install failed:\n#{@install_out}" unless status.success?

    @installed = File.join(@gem_home, "gems", "iodine-#{Iodine::VERSION}-#{Gem::Platform.local}")
  end

  after(:all) { FileUtils.rm_rf(@dir) if @dir }

  it "is built next to the source gem, its size printed" do
    expect(File.file?(File.join(@pkg, "iodine-#{Iodine::VERSION}.gem"))).to be(true)
    expect(@rake_out).to include(@gem).and match(/#{Regexp.escape(@gem)}: \d+\.\d MiB/)
    expect(@rake_out).to match(/#{Regexp.escape(@abi)}: \d+\.\d MiB -> \d+\.\d MiB stripped/)
  end

  it "holds one library per ABI folder and nothing of the Rust build" do
    listing, status = Open3.capture2e("sh", "-c", 'tar -xOf "$1" data.tar.gz | tar -tz', "sh", @gem)
    expect(status).to be_success, listing
    files = listing.split("\n")
    expect(files).to include("lib/iodine.rb", "exe/iodine", "lib/iodine/version.rb")
    expect(files.grep(%r{\Aext/|(\A|/)target/|\.rs\z|Cargo\.(toml|lock)|rust-toolchain|Makefile|mkmf\.log|\.o\z}))
      .to be_empty
    libraries = files.select { |f| f.match?(%r{\Alib/iodine/\d+\.\d+/}) || f.match?(/\.(so|bundle|dll)\z/) }
    expect(libraries).to eq(["lib/iodine/#{@abi}/iodine.so"])

    spec = Gem::Package.new(@gem).spec
    expect(spec.extensions).to be_empty
    expect(spec.platform.to_s).to eq(Gem::Platform.local.to_s)
    expect(spec.required_ruby_version).to be_satisfied_by(Gem::Version.new(RUBY_VERSION))
    expect(spec.required_ruby_version).not_to be_satisfied_by(Gem::Version.new(@abi.succ)) # 3.2: the source gem
  end

  it "strips its copy of the extension, not the dev tree's" do
    dev = File.join(ROOT, "lib", "iodine", "iodine.so")
    packed = File.join(@installed, "lib", "iodine", @abi, "iodine.so")
    expect(File.size(packed)).to be < File.size(dev)
    # The release build has no DWARF: -S drops the debugging entries of the symbol table.
    symbols = ->(file) { Open3.capture2e("readelf", "-s", "-W", file).first.count("\n") }
    expect(symbols[packed]).to be < symbols[dev]
    profile = ENV.fetch("IODINE_PROFILE", "release")
    built = File.join(ROOT, "target", profile == "dev" ? "debug" : profile, "libiodine.so")
    expect(FileUtils.compare_file(dev, built)).to be(true)
  end

  it "installs with no Rust on PATH and builds nothing" do
    out, status = clean_run(@env, "sh", "-c", "command -v cargo")
    expect(status).not_to be_success, "cargo is reachable: #{out}"
    expect(@install_out).to include("Successfully installed iodine-#{Iodine::VERSION}-#{Gem::Platform.local}")
    expect(@install_out).not_to include("Building native extensions")
    expect(Dir[File.join(@gem_home, "extensions", "**", "iodine*")]).to be_empty
  end

  it "loads its #{RUBY_VERSION[/\d+\.\d+/]}/iodine.so from any directory" do
    script = "gem 'iodine', '~> 0.7'; require 'iodine'; puts Iodine::VERSION; puts $LOADED_FEATURES.grep(/iodine\\.so/)"
    out, status = clean_run(@env, RbConfig.ruby, "-e", script, chdir: Dir.tmpdir)
    expect(status).to be_success, out
    expect(out.split("\n")).to eq([Iodine::VERSION, File.join(@installed, "lib", "iodine", @abi, "iodine.so")])
  end

  it "installs the iodine executable, which serves an app" do
    port = ServerProcess.free_port
    log = File.join(@dir, "server.log")
    pid = Process.spawn(@env, File.join(@gem_home, "bin", "iodine"), "-p", port.to_s, "-b", "127.0.0.1",
                        File.join(@installed, "examples", "hello.ru"),
                        unsetenv_others: true, chdir: Dir.tmpdir, in: File::NULL, out: log, err: log)
    Timeout.timeout(20) do
      TCPSocket.new("127.0.0.1", port).close
    rescue Errno::ECONNREFUSED
      raise "iodine exited:\n#{File.read(log)}" if Process.waitpid(pid, Process::WNOHANG)

      sleep 0.1
      retry
    end
    expect(http_get(port, "/").body).to eq("Hello World!")
  ensure
    stop_server(pid) if pid
  end

  it "says which Rubies it holds, and what to install, when the running Ruby isn't one" do
    # A copy of the installed lib, run with -I and no RUBYLIB: the dev tree's lib/iodine/iodine.so
    # is out of reach. An empty GEM_PATH: no installed iodine answers `require "iodine/iodine"`.
    lib = File.join(@dir, "lib-copy")
    FileUtils.cp_r(File.join(@installed, "lib"), lib)
    env = @env.merge("GEM_HOME" => File.join(@dir, "no-gems"), "GEM_PATH" => File.join(@dir, "no-gems"))
    script = "require 'iodine'; puts $LOADED_FEATURES.grep(/iodine\\.so/)"

    # The control: this very setup loads the copy's library, and nothing from the checkout.
    out, status = clean_run(env, RbConfig.ruby, "-I", lib, "-e", script, chdir: Dir.tmpdir)
    expect(status).to be_success, out
    expect(out.split("\n")).to eq([File.join(lib, "iodine", @abi, "iodine.so")])

    # The same gem for another Ruby: its only ABI folder is 2.7.
    File.rename(File.join(lib, "iodine", @abi), File.join(lib, "iodine", "2.7"))
    out, status = clean_run(env, RbConfig.ruby, "-I", lib, "-e", script, chdir: Dir.tmpdir)
    expect(status).not_to be_success
    expect(out).to include("(LoadError)")
      .and include("holds the extension for Ruby 2.7 only, not for Ruby #{RUBY_VERSION}")
      .and include("gem install iodine --platform ruby")
    expect(out).not_to include(ROOT)
  end
end
